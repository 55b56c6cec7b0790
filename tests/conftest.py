"""Shared pytest plumbing: paths, the VM runner, and the build check.

Every test that needs the module boots its own VM through tools/vmrun, so a
kernel splat (vmrun exit 250), a panic (251) or a hang (124) fails exactly the
test that caused it.
"""

import os
import re
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "build"
MODULE = ROOT / "vmcoh.ko"
RACE = BUILD / "userspace" / "vmcoh-race"
GTEST = BUILD / "tests" / "gtest" / "vmcoh-gtest"
VMRUN = ROOT / "tools" / "vmrun"

# The kernel matrix: Debian's stock 6.1 and 6.12, and the project's debug
# kernels (tools/build-kernel): lockdep + KASAN + kmemleak + KUnit, and KCSAN.
# VMCOH_KERNELS (make check KERNELS=...) picks some, e.g. "6.1 debug".
ALL_KERNELS = ("6.1", "6.12", "debug", "kcsan")
STOCK_KERNELS = ("6.1", "6.12")
KERNELS = [k for k in os.environ.get("VMCOH_KERNELS", " ".join(ALL_KERNELS))
           .replace(",", " ").split()]


def module_for(kernel):
    """The vmcoh.ko built for kernel (make module-KERNEL; 6.1's is the top-level one)."""
    return MODULE if kernel == "6.1" else BUILD / f"kmod-{kernel}" / "vmcoh.ko"


def is_debug_kernel(kernel):
    return kernel not in STOCK_KERNELS


# vmrun's own exit codes (see tools/vmrun --help).
VMRUN_CODES = {124: "timeout", 250: "kernel splat", 251: "kernel panic",
               252: "boot failure", 253: "runner error"}


def pytest_configure(config):
    config.addinivalue_line("markers", "vm: boots a VM under QEMU")


# Where the time goes: seconds per test file and per kernel, printed at the end of the run,
# against the wall clock (under xdist, tests run side by side).
_SECONDS = defaultdict(float)
_START = [time.monotonic()]


def pytest_sessionstart(session):
    _START[0] = time.monotonic()


def pytest_runtest_logreport(report):
    _SECONDS[report.nodeid] += report.duration


def kernel_of(nodeid):
    """The kernel a test's parameters name, or "host"."""
    params = re.search(r"\[(.*)\](@[^\[\]]*)?$", nodeid)  # xdist adds "@group"
    words = params.group(1).split("-") if params else []
    # "6.12" before "6.1": a test id holds each kernel as one whole word.
    return next((k for k in sorted(ALL_KERNELS, reverse=True) if k in words), "host")


# Under xdist, the slow kernels' tests go first, then the long runs of no one kernel, and the
# host's short ones fill the end, so the two workers finish together.
_SLOWEST_FIRST = {"debug": 0, "kcsan": 1, "6.12": 3, "6.1": 4, "host": 5}
_LONG_HOST_RUNS = ("tests/test_kselftest.py::test_the_kernels_runner",
                   "tests/test_bench.py::test_quick_run", "tests/test_dkms.py")


def pytest_collection_modifyitems(items):
    def order(item):
        return 2 if item.nodeid.startswith(_LONG_HOST_RUNS) else \
            _SLOWEST_FIRST[kernel_of(item.nodeid)]
    items.sort(key=order)


def pytest_terminal_summary(terminalreporter):
    if not _SECONDS:
        return
    total = sum(_SECONDS.values())
    by_file, by_kernel = defaultdict(float), defaultdict(float)
    for nodeid, seconds in _SECONDS.items():
        by_file[nodeid.split("::")[0]] += seconds
        by_kernel[kernel_of(nodeid)] += seconds
    write = terminalreporter.write_line
    terminalreporter.section("where the time goes")
    for name, table in (("file", by_file), ("kernel", by_kernel)):
        for key, seconds in sorted(table.items(), key=lambda kv: -kv[1]):
            write(f"{seconds:8.1f} s {100 * seconds / total:5.1f} %  {name} {key}")
    wall = time.monotonic() - _START[0]
    workers = getattr(terminalreporter.config.option, "numprocesses", None) or 1
    write(f"{total:8.1f} s in all tests, in {wall:.1f} s of wall clock "
          f"({workers} worker{'s' if workers != 1 else ''}, {total / wall:.2f} at once)")


@pytest.fixture(scope="session")
def built():
    """The module and userspace must be built (make check does it first)."""
    missing = [p for p in (MODULE, RACE, GTEST) if not p.exists()]
    if missing:
        subprocess.run(["make", "-C", str(ROOT), "all"], check=True)
    return ROOT


def vmrun(cmd, *, log, timeout=600, kernel=None, env=None, allow_splat=False, kunit=False):
    """Run cmd (a list) inside a fresh VM; return the CompletedProcess.

    log names the console/dmesg log under build/vmrun/ (one per test, so
    concurrent runs never share one).  The guest command's output is echoed
    so pytest shows it on failure.  allow_splat: for runs of a broken
    protocol, whose bug a debug kernel may report too.  kunit: a debug
    kernel's KUnit runs the module's suites at each insmod (about 2 s on an
    idle host, 4 s beside another VM); test_kunit.py's boots run them, the
    others boot with kunit.enable=0.
    """
    log_path = BUILD / "vmrun" / f"{log}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    args = [str(VMRUN), "--timeout", str(timeout), "--log", str(log_path)]
    # make check shortens the gtest stress scenarios (test_object.hpp's stress_time()).
    env = dict(env or {})
    if os.environ.get("VMCOH_STRESS_SECONDS"):
        env.setdefault("VMCOH_STRESS_SECONDS", os.environ["VMCOH_STRESS_SECONDS"])
    if kernel:
        args += ["--kernel", kernel]
    if allow_splat:
        args.append("--allow-splat")
    if kernel and is_debug_kernel(kernel) and not kunit:
        args += ["--append", "kunit.enable=0"]
    for key, value in (env or {}).items():
        args += ["--env", f"{key}={value}"]
    args += ["--"] + [str(c) for c in cmd]
    proc = subprocess.run(args, cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout + 120, stdin=subprocess.DEVNULL)
    sys.stdout.write(proc.stdout)
    sys.stderr.write(proc.stderr)
    return proc


def explain(proc):
    """A one-line reason for a non-zero vmrun status."""
    what = VMRUN_CODES.get(proc.returncode, "guest command failed")
    return f"vmrun exit {proc.returncode} ({what})"


@pytest.fixture
def results_dir():
    path = BUILD / "test-results"
    path.mkdir(parents=True, exist_ok=True)
    return path
