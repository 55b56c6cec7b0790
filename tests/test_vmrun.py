"""Tests of tools/vmrun, the QEMU runner.

Tests marked `vm` boot the stock Debian kernel under QEMU TCG (a few seconds
each); deselect them with `-m "not vm"`. The others check vmrun's log parsing
and argument handling without booting anything.
"""

import functools
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from conftest import KERNELS, guest_dmesg, is_debug_kernel, load_vmrun

ROOT = Path(__file__).resolve().parent.parent
VMRUN = ROOT / "tools" / "vmrun"
SPLAT_SRC = ROOT / "tests" / "vmrun" / "splat"


vmrun = load_vmrun()


def run(tmp_path, *command, opts=(), cwd=ROOT, timeout=180):
    """tools/vmrun OPTS -- COMMAND, with its own log; the CompletedProcess."""
    argv = [str(VMRUN), "--log", str(tmp_path / "vm.log"), *opts, "--", *command]
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout)


# ------------------------------------------------------------ no VM needed

WARNING_BLOCK = """\
[    2.687308] ------------[ cut here ]------------
[    2.687357] WARNING: CPU: 1 PID: 144 at splat.c:18 vmrun_splat_init+0xe/0x1000 [vmrun_splat]
[    2.688545] Call Trace:
[    2.688942]  <TASK>
[    2.689631] ---[ end trace 0000000000000000 ]---
[    2.700000] after the splat""".split("\n")


def test_splat_block_runs_from_cut_here_to_end_trace():
    lines = ["[    1.000000] Run /init as init process"] + WARNING_BLOCK
    assert vmrun.find_splat(lines) == WARNING_BLOCK[:5]


def test_out_of_tree_and_unsigned_module_messages_are_not_splats():
    lines = [
        "[    2.1] vmrun_splat: loading out-of-tree module taints kernel.",
        "[    2.2] vmrun_splat: module verification failed: signature and/or required key "
        "missing - tainting kernel",
        "[    2.3] clocksource: Switched to clocksource tsc",
    ]
    assert vmrun.find_splat(lines) is None


@pytest.mark.parametrize("line", [
    "BUG: KASAN: use-after-free in vmcoh_fault+0x1/0x2",
    "BUG: sleeping function called from invalid context at mm/memory.c:1",
    "BUG: soft lockup - CPU#1 stuck for 22s! [vmcoh-race:99]",
    "BUG: Bad page state in process vmcoh-race  pfn:01234",
    "WARNING: possible circular locking dependency detected",
    "WARNING: possible recursive locking detected",
    "WARNING: inconsistent lock state",
    "INFO: task vmcoh-race:123 blocked for more than 120 seconds.",
    "rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:",
    "unreferenced object 0xffff888004b2c000 (size 64):",
    "kmemleak: 1 new suspected memory leaks (see /sys/kernel/debug/kmemleak)",
    "ODEBUG: free active (active state 0) object: 00000000 object type: timer_list",
    "UBSAN: shift-out-of-bounds in kmod/fault.c:12:3",
    "general protection fault, probably for non-canonical address 0xdead: 0000 [#1]",
    "kernel BUG at kmod/entry.c:77!",
    "Oops: 0002 [#1] PREEMPT SMP NOPTI",
    "list_add corruption. prev->next should be next (ffff8880), but was 0000.",
    "refcount_t: underflow; use-after-free.",
    "Call Trace:",
])
def test_kernel_splats_are_recognised(line):
    assert vmrun.find_splat([f"[   12.345678] {line}"]) is not None


KCSAN_CORE = """\
[    4.423749] ==================================================================
[    4.423749] BUG: KCSAN: data-race in tick_nohz_idle_got_tick / tick_sched_do_timer
[    4.424204] write to 0xff1100003ea1e9ac of 1 bytes by interrupt on cpu 0:
[    4.424204]  tick_sched_do_timer+0x9a/0x120
[    4.425588] read to 0xff1100003ea1e9ac of 1 bytes by task 0 on cpu 0:
[    4.425588]  tick_nohz_idle_got_tick+0x1c/0x40
[    4.425588] Reported by Kernel Concurrency Sanitizer on:
[    4.425588] ==================================================================""".split("\n")
KCSAN_MODULE = [line.replace("tick_nohz_idle_got_tick+0x1c/0x40",
                             "vmcoh_fault+0x1c/0x80 [vmcoh]") for line in KCSAN_CORE]
KCSAN_DATA = ROOT / "tests" / "data" / "kcsan"
# Core-kernel races seen on the kcsan kernel (tests/data/kcsan/README.md).
KCSAN_SEEN = {name: (KCSAN_DATA / f"{name}.log").read_text().split("\n")
              for name in ("poll-vs-server-submit", "rmap-vs-fault-around",
                           "hiwater-rss-vs-punch")}


def test_kcsan_report_in_the_core_kernel_is_not_a_splat():
    assert vmrun.find_splat(KCSAN_CORE) is None
    assert vmrun.kcsan_notes(KCSAN_CORE) == []  # nothing of a module's in it


def test_kcsan_report_with_a_module_top_frame_is_a_splat():
    splat = vmrun.find_splat(KCSAN_MODULE + ["[    9.0] later"])
    assert splat is not None and "BUG: KCSAN" in splat[0]
    # A core-kernel report before it does not hide it.
    assert vmrun.find_splat(KCSAN_CORE + KCSAN_MODULE)[0].endswith(KCSAN_MODULE[1][15:])


@pytest.mark.parametrize("name", sorted(KCSAN_SEEN))
def test_core_kernel_races_reached_through_the_module_are_known_not_splats(name):
    """Issue 14, item 11: both accesses are core code on core memory."""
    lines = KCSAN_SEEN[name]
    report = vmrun.kcsan_reports(lines)[0]
    assert report.reached_through_module()  # the old rule made this a splat
    assert report.module_access() is None
    assert vmrun.find_splat(lines) is None
    notes = vmrun.kcsan_notes(lines)
    assert len(notes) == 1 and "known: " in notes[0], notes


@pytest.mark.parametrize("name", sorted(KCSAN_SEEN))
def test_the_same_races_with_the_module_making_an_access_are_splats(name):
    """The rule is no allowlist: a module's own access in a known race's title fails the run."""
    lines = KCSAN_SEEN[name]
    report = vmrun.kcsan_reports(lines)[0]
    top = report.accesses[1][1][0]  # the second access's top frame
    own = [line.replace(top, "vmcoh_peek_page+0x1c/0x70 [vmcoh]") for line in lines]
    splat = vmrun.find_splat(own)
    assert splat is not None and "BUG: KCSAN" in splat[0], splat
    assert vmrun.kcsan_notes(own) == []


def test_a_race_on_module_memory_is_a_splat_whoever_makes_the_accesses():
    """Core code (a wake-up, say) racing on a module's static variable is the module's race."""
    lines = [line.replace("0xffffc90000587c38", "0xffffffffa0102c40")
             for line in KCSAN_SEEN["poll-vs-server-submit"]]
    assert vmrun.kcsan_reports(lines)[0].module_access() == "0xffffffffa0102c40 is a module's memory"
    assert vmrun.find_splat(lines) is not None


def test_an_unknown_core_race_reached_through_the_module_is_a_note_that_says_so():
    lines = [line.replace("poll_schedule_timeout.constprop.0", "do_poll.constprop.0")
             for line in KCSAN_SEEN["poll-vs-server-submit"]]
    assert vmrun.find_splat(lines) is None
    notes = vmrun.kcsan_notes(lines)
    assert len(notes) == 1 and "not in KNOWN_CORE_RACES" in notes[0], notes


def test_every_known_core_race_is_one_of_the_reports_seen():
    """KNOWN_CORE_RACES stays short and exact: each entry matches a report on record."""
    seen = {vmrun.kcsan_reports(lines)[0].functions for lines in KCSAN_SEEN.values()}
    assert set(vmrun.KNOWN_CORE_RACES) == seen


def test_seabios_escape_codes_are_stripped_from_the_console():
    raw = "\x1bc\x1b[?7l\x1b[2J\x1b[0mSeaBIOS (version 1.16)\r\nBooting from ROM...\x1bc\n"
    assert vmrun.clean_lines(raw) == ["SeaBIOS (version 1.16)", "Booting from ROM...", ""]


@pytest.mark.parametrize("timed_out, qemu_rc, ret, console, dmesg, qemu_err, expected", [
    (True, 0, "start 2.1\n", [], [], "", vmrun.EXIT_TIMEOUT),
    (False, 0, "start 2.1\nexit 7\n", [], ["clean"], "", 7),
    (False, 0, "start 2.1\nexit 0\n", [], WARNING_BLOCK, "", vmrun.EXIT_SPLAT),
    (False, 0, "start 2.1\nexit 3\n", [], WARNING_BLOCK, "", 3),
    (False, 1, "start 2.1\n", ["[ 3.6] Kernel panic - not syncing: sysrq"], [], "",
     vmrun.EXIT_PANIC),
    (False, 1, "start 2.1\n", ["[ 3.6] sysrq: Trigger a crash"], [], "", vmrun.EXIT_PANIC),
    (False, 0, "", ["vmcoh-init: cannot mount the host root"], [], "", vmrun.EXIT_BOOT),
    (False, 0, "boot-splat 32\n", [], WARNING_BLOCK, "", vmrun.EXIT_SPLAT),
    (False, 1, "", [""], [], "qemu-system-x86_64: -kernel: bad image", vmrun.EXIT_RUNNER),
])
def test_classify_gives_one_exit_code_per_outcome(timed_out, qemu_rc, ret, console, dmesg,
                                                  qemu_err, expected):
    rc, _, _ = vmrun.classify(timed_out, qemu_rc, ret, console, dmesg, qemu_err)
    assert rc == expected


def test_base_initramfs_is_padded_for_an_appended_archive():
    cpio = vmrun.Cpio()
    cpio.file("init", b"#!/bin/sh\n", 0o755)
    assert len(cpio.finish()) % 512 == 0


def test_kernel_6_1_is_not_confused_with_6_12():
    if not list(Path("/boot").glob("vmlinuz-6.1.*")):
        pytest.skip("no stock 6.1 kernel installed")
    assert vmrun.find_stock_kernel("6.1").name.startswith("vmlinuz-6.1.")
    assert not vmrun.find_stock_kernel("6.1").name.startswith("vmlinuz-6.12")


@pytest.mark.parametrize("argv", [
    ["--no-such-option", "--", "true"],
    [],
    ["--kernel", "/nonexistent/vmlinuz", "--", "true"],
    ["--rwdir", "/nonexistent/dir", "--", "true"],
    ["--env", "no-equals-sign", "--", "true"],
])
def test_bad_arguments_are_runner_errors(argv):
    r = subprocess.run([str(VMRUN), *argv], capture_output=True, text=True, timeout=60)
    assert r.returncode == vmrun.EXIT_RUNNER, r.stderr


# --------------------------------------------------------------- VM boots


def build_splat_module(kdir, build):
    """vmrun_splat.ko built against the kernel tree kdir, in the directory build."""
    for name in ("splat.c", "Kbuild"):
        shutil.copy(SPLAT_SRC / name, build)
    subprocess.run(["make", "-C", str(kdir), f"M={build}", "modules"], check=True,
                   capture_output=True, timeout=300)
    return build / "vmrun_splat.ko"


@pytest.fixture(scope="session")
def splat_module(tmp_path_factory):
    """vmrun_splat.ko built for the default guest kernel, in a host /tmp dir."""
    release = subprocess.run([str(VMRUN), "--print-release"], capture_output=True,
                             text=True, check=True).stdout.strip()
    kdir = Path("/lib/modules") / release / "build"
    if not kdir.is_dir():
        kdir = next(iter(sorted(Path("/usr/src").glob(f"linux-headers-{release}"))), None)
    if not kdir:
        pytest.skip(f"no kernel headers for {release}")
    return build_splat_module(kdir, tmp_path_factory.mktemp("splat"))


@pytest.mark.vm
@pytest.mark.parametrize("command, status", [(["sh", "-c", "exit 7"], 7), (["true"], 0)])
def test_guest_exit_status_is_returned(tmp_path, command, status):
    r = run(tmp_path, *command)
    assert r.returncode == status, r.stderr


@pytest.mark.vm
def test_guest_output_reaches_host_live_and_clean(tmp_path):
    argv = [str(VMRUN), "--log", str(tmp_path / "vm.log"), "--",
            "sh", "-c", "echo first; echo to-stderr >&2; sleep 4; echo second"]
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        first = proc.stdout.readline()
        first_seen = time.monotonic()
        rest, err = proc.communicate(timeout=180)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert first == "first\n"
    assert rest == "second\n"
    assert time.monotonic() - first_seen > 3, "output was not streamed while the guest ran"
    assert "to-stderr" in err
    assert "\x1b" not in first + rest + err


@pytest.mark.vm
def test_project_dir_is_writable_and_host_root_read_only(tmp_path):
    probe = ROOT / "build" / "vmrun" / f"probe-{os.getpid()}"
    probe.parent.mkdir(parents=True, exist_ok=True)
    try:
        r = run(tmp_path, "sh", "-c",
                f"pwd; echo from-guest > {probe.relative_to(ROOT)} && "
                "! touch /usr/vmrun-read-only-probe 2>/dev/null")
        assert r.returncode == 0, r.stderr
        assert r.stdout == f"{ROOT}\n"
        assert probe.read_text() == "from-guest\n"
    finally:
        probe.unlink(missing_ok=True)


@pytest.mark.vm
def test_timeout_kills_the_guest_with_124(tmp_path):
    start = time.monotonic()
    r = run(tmp_path, "sleep", "1000", opts=["--timeout", "20"])
    assert r.returncode == 124, r.stderr
    assert time.monotonic() - start < 40


@pytest.mark.vm
def test_kernel_panic_gives_251(tmp_path):
    r = run(tmp_path, "sh", "-c", "echo 1 > /proc/sys/kernel/sysrq; echo c > /proc/sysrq-trigger")
    assert r.returncode == 251, r.stderr
    assert "Kernel panic - not syncing" in r.stderr


@pytest.mark.vm
def test_panic_during_boot_is_booted_again_then_gives_251(tmp_path):
    """A panic before the command started is retried (TCG boot flakes); a
    kernel that can never boot still fails, after BOOT_ATTEMPTS boots."""
    log = tmp_path / "boot.log"
    r = run(tmp_path, "true", opts=["--append", "rdinit=/nonexistent", "--log", str(log)])
    assert r.returncode == 251, r.stderr
    assert r.stderr.count("booting again") == vmrun.BOOT_ATTEMPTS - 1
    assert f"during boot, {vmrun.BOOT_ATTEMPTS} boot(s)" in r.stderr
    for attempt in range(1, vmrun.BOOT_ATTEMPTS):
        assert "Kernel panic" in (tmp_path / f"boot.boot{attempt}.log").read_text()
    assert "Kernel panic" in log.read_text()


# The kernel applies sysctl.* from its command line before it runs init: a
# taint that init sees, as after a WARNING or a KASAN report while booting.
BOOT_TAINT = "sysctl.kernel.tainted=512"


@pytest.mark.vm
def test_splat_during_boot_is_booted_again_then_gives_250(tmp_path):
    """A splat before the command started is retried without running it; a
    kernel that splats on every boot fails with 250 after BOOT_ATTEMPTS boots."""
    marker = tmp_path / "ran"
    r = run(tmp_path, "touch", str(marker), opts=["--append", BOOT_TAINT,
                                                  "--rwdir", str(tmp_path)])
    assert r.returncode == 250, r.stderr
    assert r.stderr.count("kernel splat during boot") == vmrun.BOOT_ATTEMPTS
    assert f"before the command ran, {vmrun.BOOT_ATTEMPTS} boot(s)" in r.stderr
    assert not marker.exists()


@pytest.mark.vm
def test_allow_splat_runs_the_command_after_a_splat_during_boot(tmp_path):
    r = run(tmp_path, "true", opts=["--append", BOOT_TAINT, "--allow-splat"])
    assert r.returncode == 0, r.stderr
    assert "booting again" not in r.stderr


@pytest.mark.vm
def test_warning_from_a_module_is_a_splat_250(tmp_path, splat_module):
    r = run(tmp_path, "insmod", splat_module.name, opts=["--rwdir", str(splat_module.parent)],
            cwd=splat_module.parent)
    assert r.returncode == 250, r.stderr
    assert "WARNING:" in r.stderr and "vmrun_splat_init" in r.stderr


@pytest.mark.vm
def test_allow_splat_reports_but_does_not_fail(tmp_path, splat_module):
    r = run(tmp_path, "insmod", str(splat_module),
            opts=["--rwdir", str(splat_module.parent), "--allow-splat"])
    assert r.returncode == 0, r.stderr
    assert "WARNING:" in r.stderr


@pytest.mark.vm
def test_failed_command_keeps_its_status_despite_a_splat(tmp_path, splat_module):
    r = run(tmp_path, "sh", "-c", f"insmod {splat_module}; exit 3",
            opts=["--rwdir", str(splat_module.parent)])
    assert r.returncode == 3, r.stderr
    assert "WARNING:" in r.stderr


@pytest.mark.vm
def test_clean_module_load_is_not_a_splat(tmp_path, splat_module):
    r = run(tmp_path, "insmod", str(splat_module), "warn=0",
            opts=["--rwdir", str(splat_module.parent)])
    assert r.returncode == 0, r.stderr
    assert "splat" not in r.stderr


@pytest.mark.vm
def test_guest_without_its_modules_is_a_boot_failure_252(tmp_path):
    no_modules = ROOT / "build" / "vmrun" / "no-modules"
    no_modules.mkdir(parents=True, exist_ok=True)
    r = run(tmp_path, "true", opts=["--modules", str(no_modules)])
    assert r.returncode == 252, r.stderr
    assert "vmcoh-init:" in r.stderr


@pytest.mark.vm
def test_stock_6_12_boots(tmp_path):
    if not list(Path("/boot").glob("vmlinuz-6.12.*")):
        pytest.skip("no stock 6.12 kernel installed")
    r = run(tmp_path, "uname", "-r", opts=["--kernel", "6.12"])
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("6.12.")


# ------------------------------------------------------- debug kernels

# Each planted bug (tests/vmrun/splat/splat.c bug=) and the report that proves
# its detector works and that vmrun turns it into exit 250.
PLANTED = {
    "debug": {
        "uaf": "BUG: KASAN: use-after-free",
        "leak": "unreferenced object",
        "abba": "possible circular locking dependency",
        "hang": "blocked for more than",
        "atomic": "sleeping function called from invalid context",
    },
    "kcsan": {
        "race": "BUG: KCSAN: data-race",
        "abba": "possible circular locking dependency",
        "atomic": "sleeping function called from invalid context",
    },
}
DEBUG_KERNELS = [k for k in KERNELS if is_debug_kernel(k) and k in PLANTED]


@pytest.fixture(scope="session")
def debug_splat_modules(tmp_path_factory):
    """{kernel: vmrun_splat.ko built against that debug kernel's tree}."""
    modules = {}
    for kernel in DEBUG_KERNELS:
        kdir = subprocess.run([str(ROOT / "tools" / "build-kernel"), "--kdir", "--no-build",
                               kernel], capture_output=True, text=True)
        if kdir.returncode != 0:
            pytest.fail(f"{kernel} is not built: make kernels ({kdir.stderr.strip()})")
        modules[kernel] = build_splat_module(kdir.stdout.strip(),
                                             tmp_path_factory.mktemp(f"splat-{kernel}"))
    return modules


@functools.cache
def planted_run(kernel, module):
    """One boot of kernel that loads the clean module, then plants each of its bugs in turn
    (lockdep's first, as a later report may turn lockdep off): (vmrun's result, the guest's
    dmesg lines).  Each step's marker in the kernel log names the pid of its insmod."""
    def step(bug, extra=""):
        return (f"sh -c 'echo \"planting {bug} as pid $$\" >/dev/kmsg; "
                f"exec insmod {module} bug={bug}{extra}' && rmmod vmrun_splat")
    # The clean load first, with the default hung-task timeout; then the bugs, the hang's
    # timeout short.
    steps = [step("none") + " && echo 'vmrun_splat: none: loaded and unloaded' >/dev/kmsg",
             "echo 2 > /proc/sys/kernel/hung_task_timeout_secs"]
    order = ("abba", "race", "atomic", "hang", "leak", "uaf")
    for bug in sorted(PLANTED[kernel], key=order.index):
        steps.append(step(bug, " hang_s=6" if bug == "hang" else ""))
    r = run(module.parent, "sh", "-c", "; ".join(steps),
            opts=["--kernel", kernel, "--rwdir", str(module.parent)], timeout=600)
    return r, guest_dmesg(module.parent / "vm.log")


def marker(dmesg, bug):
    """(the index of the line that plants bug, its insmod's pid), or (None, None)."""
    for i, line in enumerate(dmesg):
        found = re.search(rf"planting {bug} as pid (\d+)", line)
        if found:
            return i, found.group(1)
    return None, None


# Each detector fires in the one boot, and vmrun's splat finder takes its report for a splat.
@pytest.mark.vm
@pytest.mark.parametrize("kernel, bug", [
    pytest.param(k, b, marks=pytest.mark.xdist_group(f"planted-{k}"))
    for k in DEBUG_KERNELS for b in PLANTED[k]])
def test_debug_kernel_detector_fires_and_is_a_splat(debug_splat_modules, kernel, bug):
    r, dmesg = planted_run(kernel, debug_splat_modules[kernel])
    assert r.returncode == 250, r.stderr
    start = marker(dmesg, bug)[0]
    assert start is not None, f"bug={bug} was never planted:\n{r.stderr}"
    report = next((i for i, line in enumerate(dmesg[start:], start)
                   if PLANTED[kernel][bug] in line), None)
    assert report is not None, f"no {PLANTED[kernel][bug]!r} after bug={bug}:\n" + \
        "\n".join(dmesg[start:start + 60])
    splat = vmrun.find_splat(dmesg[report - 1:report + 40])
    assert splat and any(PLANTED[kernel][bug] in line for line in splat[:2]), \
        f"vmrun does not take {dmesg[report]!r} for a splat"


@pytest.mark.vm
@pytest.mark.parametrize("kernel", [
    pytest.param(k, marks=pytest.mark.xdist_group(f"planted-{k}")) for k in DEBUG_KERNELS])
def test_debug_kernel_boots_clean(debug_splat_modules, kernel):
    """No detector fires on its own: the boot, the clean module's load and unload, and the
    kmemleak scan find nothing but the planted bugs' reports (the same boot, after them)."""
    r, dmesg = planted_run(kernel, debug_splat_modules[kernel])
    assert any("Linux version" in line for line in dmesg), r.stderr
    clean, _ = marker(dmesg, "none")
    assert clean is not None, f"the clean module was never loaded:\n{r.stderr}"
    first = min(i for i, _ in (marker(dmesg, bug) for bug in PLANTED[kernel]) if i is not None)
    assert any("vmrun_splat: none: loaded and unloaded" in line for line in dmesg[clean:first]), \
        "the clean module did not load and unload:\n" + "\n".join(dmesg[clean:first])
    splat = vmrun.find_splat(dmesg[:first])
    assert splat is None, "a detector fired before any bug was planted:\n" + "\n".join(splat)
    # kmemleak's report comes last: each object in it must be one the leak bug planted.
    _, leak_pid = marker(dmesg, "leak")
    owners = [line.strip() for line in dmesg if re.match(r"\s*comm \"", line)]
    if "leak" in PLANTED[kernel]:
        assert owners, "kmemleak reported nothing, not even the planted leak"
    others = [o for o in owners if not o.startswith(f'comm "insmod", pid {leak_pid},')]
    assert not others, f"kmemleak reports objects the leak bug (pid {leak_pid}) did not plant: " \
        f"{others}"
