"""Shared pytest plumbing: paths, the VM runner, and the build check.

Every test that needs the module boots its own VM through tools/vmrun, so a
kernel splat (vmrun exit 250), a panic (251) or a hang (124) fails exactly the
test that caused it.
"""

import functools
import importlib.machinery
import importlib.util
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


def shared_boot_lines(logs=BUILD / "vmrun"):
    """For each shared boot of this session (its log is newer than the session's start): the
    guest's seconds in each step, from the markers' kernel-log timestamps.  The boot's test
    time counts to the first of its tests; this says what each step took of it."""
    lines = []
    started = time.time() - (time.monotonic() - _START[0])
    for boot, steps in BOOTS.items():
        for log in sorted(logs.glob(f"{boot}-*.log")):
            if log.stat().st_mtime < started:
                continue
            marks = {}
            for found in re.finditer(rf"^\[\s*(\d+\.\d+)\] {STEP_MARK} (\S+) (begin|end)\b",
                                     log.read_text(errors="replace"), re.M):
                marks[found.group(2), found.group(3)] = float(found.group(1))
            took = [f"{name} {marks[name, 'end'] - marks[name, 'begin']:.0f} s" for name in steps
                    if (name, "begin") in marks and (name, "end") in marks]
            if took:
                name = "shared boot" if boot == "suite" else f"{boot} boot"
                lines.append(f"{name} {log.stem[len(boot) + 1:]}: " + ", ".join(took)
                             + " (guest seconds; counted to its first test)")
    return lines


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
    for line in shared_boot_lines():
        write(line)
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


def guest_dmesg(log):
    """The guest's kernel log (and kmemleak's report after it) from a vmrun --log file."""
    text = log.read_text(errors="replace")
    return text.split("===== vmrun: guest dmesg =====", 1)[-1].split("\n===== vmrun: ")[0] \
        .split("\n")


@functools.cache
def load_vmrun():
    """tools/vmrun as a module (its splat finder, its argument parser)."""
    loader = importlib.machinery.SourceFileLoader("vmrun_tool", str(VMRUN))
    spec = importlib.util.spec_from_loader("vmrun_tool", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


# Suites that share one boot per kernel: each is a step of one guest script, between two
# kernel-log markers, so that a splat is charged to the step in whose stretch of the log it is,
# and its exit status comes from its end marker.  A boot costs 3 to 8 s on the stock kernels
# and 30 to 45 s on `debug` (its kmemleak scans included).  Each boot's tests are in one xdist
# group per kernel ("BOOT-KERNEL").  A step's command gets {out}, a directory of its own for
# reports (build/test-results/STEP-KERNEL, emptied first), and {module}.
BOOTS = {
    # boot: {step: (guest command, its timeout in seconds)}
    "suite": {
        "gtest": ("tests/guest/gtest.sh {out} {module}", 900),
        "interleavings": ("tests/guest/interleavings.sh {out} {module}", 600),
        "trace": ("tests/guest/trace.py {out} {module}", 900),
    },
    # test_backing.py: the backed objects' scenarios and variants, then the example server.
    "backing": {
        "backing": ("tests/guest/backing.sh {out} {module}", 900),
        "example_server": ("tests/guest/example_server.sh {module}", 300),
    },
}
STEPS = BOOTS["suite"]
STEP_MARK = "vmcoh-step:"


def interleave_repeat(kernel):
    """Repetitions of each interleaving (interleavings.sh): 20 on the stock kernels, where every
    one must catch the targeted variant; the debug kernels check the same paths under lockdep,
    KASAN and KCSAN, each repetition several times slower: 5 suffice there."""
    return 5 if is_debug_kernel(kernel) else 20


def boot_kernels(boot):
    """KERNELS, as parameters in boot's xdist group per kernel."""
    return [pytest.param(k, marks=pytest.mark.xdist_group(f"{boot}-{k}")) for k in KERNELS]


SUITE_KERNELS = boot_kernels("suite")


class SharedBoot:
    """The one boot that ran every step of steps on a kernel: vmrun's result and the guest's
    kernel log."""

    def __init__(self, proc, dmesg, steps=STEPS):
        self.proc, self.dmesg, self.steps = proc, dmesg, steps

    def segment(self, name):
        """The kernel log lines from step name's begin marker to its end marker (or the end)."""
        marks = [i for i, line in enumerate(self.dmesg)
                 if f"{STEP_MARK} {name} begin" in line or f"{STEP_MARK} {name} end" in line]
        if not marks:
            return None
        return self.dmesg[marks[0]:marks[1] + 1] if len(marks) > 1 else self.dmesg[marks[0]:]

    def outside(self):
        """The kernel log lines in no step (kmemleak's report is at the end)."""
        inside, lines = False, []
        for line in self.dmesg:
            if STEP_MARK in line:
                inside = " begin" in line
                continue
            if not inside:
                lines.append(line)
        return lines

    def check(self, name):
        """Fails unless step name ran, exited 0, and no splat is in its stretch of the log or
        in none (a splat in another step's stretch is that step's)."""
        proc = self.proc
        # From the end marker: the kernel log is complete when vmrun has a status, where the
        # tail of the command's output may not be.
        status = next((found for found in (re.search(rf"{STEP_MARK} {name} end (\d+)$", line)
                                           for line in self.dmesg) if found), None)
        assert status, f"step {name} did not finish; {explain(proc)}"
        splat_finder = load_vmrun().find_splat
        splat = splat_finder(self.segment(name) or [])
        assert splat is None, f"kernel splat during {name}:\n" + "\n".join(splat)
        if proc.returncode == 250:  # someone's splat: not this step's, but is it anyone's?
            stray = splat_finder(self.outside())
            assert stray is None, "kernel splat outside every step (a leak, or between " \
                "steps):\n" + "\n".join(stray)
        else:
            assert proc.returncode == 0, explain(proc)
        command = self.steps[name][0].split()[0]
        assert status.group(1) == "0", f"{command} exit {status.group(1)}"


def step_out(name, kernel):
    """Step name's report directory on kernel."""
    return BUILD / "test-results" / f"{name}-{kernel}"


@functools.cache
def shared_boot(kernel, boot="suite"):
    """Every step of BOOTS[boot] on kernel, in one boot (once per pytest worker: the group's
    first test pays for it)."""
    module = module_for(kernel)
    assert module.exists(), f"{module} missing: make module-{kernel}"
    steps = BOOTS[boot]
    lines = ['step() { name=$1; shift; echo "%s $name begin" >/dev/kmsg; rc=0; "$@" || rc=$?; '
             'echo "%s $name end $rc" >/dev/kmsg; echo "%s $name exit $rc"; }'
             % (STEP_MARK, STEP_MARK, STEP_MARK)]
    for name, (command, _) in steps.items():
        out = step_out(name, kernel)
        out.mkdir(parents=True, exist_ok=True)
        for old in out.iterdir():
            old.unlink()
        lines.append(f"step {name} " + command.format(out=out, module=module))
    # The steps' exits are printed; the script's own is 0, so that vmrun gives 250 for a splat.
    proc = vmrun(["sh", "-c", "\n".join(lines)], log=f"{boot}-{kernel}", kernel=kernel,
                 timeout=sum(timeout for _, timeout in steps.values()),
                 env={"VMCOH_INTERLEAVE_REPEAT": interleave_repeat(kernel),
                      "VMCOH_INTERLEAVE_MATRIX": os.environ.get("VMCOH_INTERLEAVE_MATRIX", "")})
    return SharedBoot(proc, guest_dmesg(BUILD / "vmrun" / f"{boot}-{kernel}.log"), steps)


@pytest.fixture
def results_dir():
    path = BUILD / "test-results"
    path.mkdir(parents=True, exist_ok=True)
    return path
