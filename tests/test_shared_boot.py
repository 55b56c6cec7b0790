"""conftest.SharedBoot: a splat in one step's stretch of the kernel log fails that step's test
only; one outside every step (kmemleak's report comes last) fails them all.  No VM needed."""

import subprocess

import pytest

from conftest import STEP_MARK, SharedBoot, shared_boot_lines

SPLAT = """\
[   20.000001] ------------[ cut here ]------------
[   20.000002] WARNING: CPU: 1 PID: 144 at kmod/fault.c:18 vmcoh_fault+0xe/0x100 [vmcoh]
[   20.000003] Call Trace:
[   20.000004]  <TASK>
[   20.000005] ---[ end trace 0000000000000000 ]---""".split("\n")
LEAK = """\
unreferenced object 0xffff888004c3b000 (size 128):
  comm "insmod", pid 93, jiffies 4294900119
  backtrace:
    [<ffffffff81234567>] kmalloc_trace+0x27/0xa0""".split("\n")


def boot(splat_in=None, status=0, exits=(("gtest", 0), ("trace", 0))):
    """A boot of two steps, gtest and trace, with SPLAT in splat_in's stretch ("leak": LEAK
    after both), the script's vmrun status, and the exits its end markers give (a step
    without one did not finish)."""
    ends = dict(exits)
    dmesg = ["[    1.000000] Run /init as init process"]
    for name in ("gtest", "trace"):
        dmesg.append(f"[   10.000000] {STEP_MARK} {name} begin")
        dmesg += SPLAT if splat_in == name else ["[   11.000000] vmcoh: loaded"]
        if name in ends:
            dmesg.append(f"[   12.000000] {STEP_MARK} {name} end {ends[name]}")
    if splat_in == "leak":
        dmesg += LEAK
    stdout = "".join(f"{STEP_MARK} {name} exit {rc}\n" for name, rc in exits)
    return SharedBoot(subprocess.CompletedProcess([], status, stdout, ""), dmesg)


def test_a_clean_boot_passes_every_step():
    boot().check("gtest")
    boot().check("trace")


def test_a_splat_fails_the_step_it_happened_in_only():
    b = boot(splat_in="trace", status=250)
    b.check("gtest")
    with pytest.raises(AssertionError, match="kernel splat during trace"):
        b.check("trace")


def test_a_leak_reported_after_every_step_fails_them_all():
    b = boot(splat_in="leak", status=250)
    for name in ("gtest", "trace"):
        with pytest.raises(AssertionError, match="outside every step"):
            b.check(name)


def test_a_step_that_did_not_finish_or_failed_fails():
    with pytest.raises(AssertionError, match="step trace did not finish"):
        boot(exits=(("gtest", 0),)).check("trace")
    with pytest.raises(AssertionError, match="exit 1"):
        boot(exits=(("gtest", 1), ("trace", 0))).check("gtest")


def test_a_boot_that_did_not_end_well_fails_every_step():
    with pytest.raises(AssertionError, match="vmrun exit 124"):
        boot(status=124).check("gtest")


def test_the_summary_says_what_each_step_of_a_shared_boot_took(tmp_path):
    (tmp_path / "suite-debug.log").write_text("\n".join([
        f"{STEP_MARK} gtest exit 0",  # the command's output: no timestamps
        f"[   20.500000] {STEP_MARK} gtest begin", f"[   78.400000] {STEP_MARK} gtest end 0",
        f"[   78.500000] {STEP_MARK} interleavings begin",
        f"[  117.300000] {STEP_MARK} interleavings end 0",
        f"[  117.300000] {STEP_MARK} trace begin"]))  # trace never ended: not reported
    (tmp_path / "backing-6.1.log").write_text("\n".join([
        f"[   3.000000] {STEP_MARK} backing begin", f"[  95.200000] {STEP_MARK} backing end 0",
        f"[  95.200000] {STEP_MARK} example_server begin",
        f"[ 101.000000] {STEP_MARK} example_server end 0"]))
    assert shared_boot_lines(tmp_path) == [
        "shared boot debug: gtest 58 s, interleavings 39 s (guest seconds; counted to its "
        "first test)",
        "backing boot 6.1: backing 92 s, example_server 6 s (guest seconds; counted to its "
        "first test)"]
