"""Backed objects catch the broken variants of their protocol, in a VM.

tests/guest/backing.sh runs the scenarios of the two seeds about data that
lives elsewhere against the safe module and against each unsafe variant:

- load vs invalidate (wendelin.core): one scenario driven by the server's
  timing, one under stress, each for a server of blocks and for one of
  runs (region loads, where an invalidation hits part of a run);
- dirty data across a coherence-lock drop (OCFS2): one deterministic, one
  under stress, and lock-drop-vs-fault, driven by hold points, whose unsafe
  variant deadlocks and must be reported, with the stuck stacks, by the
  scenario's watchdog instead of hanging the run;
- a store into a run of dirty blocks while writeback sends it in one STORE
  (issue 17): one step by step, driven by a hold point, one under stress;
- a server in the faulting process: a retried fault that waits for it must
  not hold mmap_lock, or an mmap(2) there waits for the server, whose own
  page faults wait for the mmap.

The safe module must pass all of them, and the interleavings driven by hold
points too (its stress scenarios run in test_module.py's gtest boot, with the
module loaded as users load it).  Each variant must fail its deterministic scenario with the
failure that names its bug.  A stress scenario's verdict on a variant is
reported, not required: whether stress alone hits the window is luck.
"""

import json
from typing import NamedTuple, Optional

import pytest

from conftest import boot_kernels, shared_boot, step_out

pytestmark = pytest.mark.vm

LOAD = "ALoadInvalidatedInFlightIsDroppedAndRedone"
LOAD_STRESS = "StressNoReadSeesAGenerationOlderThanTheLastInvalidation"
RUN = "ALoadOfARunInvalidatedInPartIsRedoneForThatPartOnly"
RUN_STRESS = "StressNoReadOfARunSeesAGenerationOlderThanTheLastInvalidation"
DROP = "DirtyDataSurvivesADrop"
DROP_STRESS = "StressNothingWrittenIsLostAcrossDropsAndFsyncs"
RUN_STORE = "AStoreBeforeItsRunIsWriteProtectedReachesTheServer"
RUN_STORE_STRESS = "StressNothingWrittenInRunsIsLostAcrossDropsAndFsyncs"
DEADLOCK = "ADropDoesNotWaitForAFaultThatWaitsForIt"
MMAP_LOCK = "AFaultWaitingForTheServerAgainLetsGoOfMmapLock"
# Interleavings driven by hold points, run on the safe module only.
HOLDS = {"ALoadStartedOverAMappedEntryLeavesNoStalePte", "AFaultDuringADropWaitsAndLoadsAgain",
         "AStoreRacingAttachLoadsTheServersBlock"}


class Variant(NamedTuple):
    scenario: str
    message: str          # what the scenario's failure must say
    stress: Optional[str]  # the stress scenario it also runs, if any
    # More scenarios that must fail with the message, and their stress scenarios.
    also: tuple = ()
    also_stress: tuple = ()


VARIANTS = {
    "load_after_invalidate": Variant(LOAD, "a stale answer was installed", LOAD_STRESS,
                                     (RUN,), (RUN_STRESS,)),
    "invalidate_waits_load": Variant(
        LOAD, "INVALIDATE must not wait for the load in flight", LOAD_STRESS,
        (RUN,), (RUN_STRESS,)),
    "drop_skips_writeback": Variant(
        DROP, "the drop lost what was stored through mmap", DROP_STRESS),
    "writeback_copy_before_unmap": Variant(
        RUN_STORE, "a store before its run was write-protected was lost", RUN_STORE_STRESS),
    "drop_under_entry_lock": Variant(
        DEADLOCK, "deadlock: the DROP waits for an entry whose holder waits for the DROP", None),
    "wait_holding_mmap_lock": Variant(
        MMAP_LOCK, "mmap(2) waited for a fault that waits for the server", None),
}


class Result(NamedTuple):
    failures: str
    seconds: float
    properties: dict


def results(report):
    """{test name: Result} of a gtest JSON report."""
    data = json.loads(report.read_text())
    fixed = {"name", "file", "line", "status", "result", "timestamp", "time", "classname",
             "failures"}
    return {t["name"]: Result("\n".join(f["failure"] for f in t.get("failures", [])),
                              float(t["time"].rstrip("s")),
                              {k: v for k, v in t.items() if k not in fixed})
            for s in data["testsuites"] for t in s["testsuite"]}


# backing.sh, then example_server.sh: the steps of one boot per kernel (conftest.BOOTS), each
# with its exit status and the splats in its stretch of the kernel log.
ONE_BOOT = boot_kernels("backing")


@pytest.mark.parametrize("kernel", ONE_BOOT)
def test_unsafe_backing_protocols_are_caught(built, kernel):
    shared_boot(kernel, "backing").check("backing")
    out = step_out("backing", kernel)

    safe = results(out / "backing-safe.json")
    # Its stress scenarios run in test_module.py's gtest boot, with fault-around on.
    assert set(safe) == {LOAD, RUN, DROP, RUN_STORE, DEADLOCK, MMAP_LOCK} | HOLDS
    for name, result in safe.items():
        assert not result.failures, f"safe module failed {name}:\n{result.failures}"
        print(f"{kernel} safe: {name} passed in {result.seconds:.3f} s {result.properties}")

    for variant, expected in VARIANTS.items():
        report = out / f"backing-{variant}.json"
        assert report.exists(), f"{variant}: no report"
        found = results(report)
        caught = found[expected.scenario]
        assert expected.message in caught.failures, \
            f"{variant} not caught:\n{caught.failures or 'passed'}"
        line = f"{kernel} {variant}: caught by {expected.scenario} in {caught.seconds:.3f} s"
        for scenario in expected.also:
            also = found[scenario]
            assert expected.message in also.failures, \
                f"{variant} not caught by {scenario}:\n{also.failures or 'passed'}"
            line += f", by {scenario} in {also.seconds:.3f} s"
        for name in filter(None, (expected.stress,) + expected.also_stress):
            stress = found[name]
            verdict = "caught" if stress.failures else "not caught"
            line += f"; {name} {verdict} ({stress.seconds:.1f} s, {stress.properties})"
        print(line)
    # The deadlock is reported with the stacks of both sides.
    deadlock = results(out / "backing-drop_under_entry_lock.json")[DEADLOCK].failures
    assert "vmcoh_drop" in deadlock and "vmcoh_fault" in deadlock, deadlock


@pytest.mark.parametrize("kernel", ONE_BOOT)
def test_the_minimal_example_server_serves_a_file(built, kernel):
    """docs/server.md's example, through a window a quarter of the file (example_server.sh,
    which exits 0 only if the object read the file's bytes, by read(2) and through a mapping,
    and the server exited cleanly)."""
    shared_boot(kernel, "backing").check("example_server")
