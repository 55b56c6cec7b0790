"""The window of 2 MiB ranges, and the fault that must not reclaim holding its entry, in a VM.

tests/guest/window.sh runs the scenarios of the virtiofs DAX seed
(tests/gtest/device_window_test.cpp) with window_mb=4 - two ranges, for an
object four times that: mapped reads, writes that reclaim inline, stores
whose faults reclaim once they let go of their locks, stores that survive
the reclaim of their range, the shrinker, an object without a server,
exhaustion under writer threads and reader processes, the exact
interleaving in which a fault that reclaimed holding its entry would
deadlock with an INVALIDATE, and stores through GUP pins of a block that was punched or
invalidated, which must not land on the index's next block (the same page).

The 2 MiB scenarios (tests/gtest/device_pmd_test.cpp) run first, in the
same module load: a fully resident region mapped by one PMD, GUP through it, stores through it, the downgrade by a
mapping of one page, partial punches and shrinks, a punch waiting for a
PMD fault that holds its region, PMD and PTE faults mixed with punches and
writes, and a backed object's PMD stores reaching the server at fsync.

Then, with window_mb=16, async readahead: a mapped pass and read(2) of 1 MiB
send each region before the reader gets there, once, and an invalidation
of part of a region sent ahead drops that part of its answer.

The safe module must pass all of them with a clean kernel log.  The safe
runs, the variants below and, on the debug kernels, the rmmod loops share
one boot per kernel.
unsafe=pmd_downgrade_no_unmap, which removes a 2 MiB entry without
unmapping its PMDs, must be caught by the downgrade scenario, and
unsafe=reuse_pinned, which lets a freed page back its index again while a
pin may still write through it, by every pin scenario, and
unsafe=drop_skips_writeback, which reclaims a range without writing its dirty
blocks back, by the reclaims of write(2) and of a fault, and
unsafe=no_store_wait, which frees blocks a counted fault-around may still map,
by the fault-around parked after its lookup while a punch runs (with
fault_around=16; one boot for all).
unsafe=reclaim_in_fault must deadlock in the last one and be reported by its
watchdog with the stacks of both sides; a debug kernel's lockdep reports the
inversion too (its entry locks have a lockdep map), so that run allows
splats and says whether it saw one.
"""

import functools
import json
import os

import pytest

from conftest import KERNELS, explain, is_debug_kernel, module_for, vmrun

pytestmark = pytest.mark.vm

SCENARIOS = {
    "MappedReadsOfFourTimesTheWindowSeeTheirBlocksAndStayWithinIt",
    "WritesReclaimInlineAndNothingWrittenIsLost",
    "StoresReclaimInTheirFaultsAndNothingStoredIsLost",
    "WindowStatsAnswerTheSizeOfAnOlderHeader",
    "StoresThroughAMappingSurviveTheReclaimOfTheirRange",
    "TheShrinkerGivesRangesBackAndTheWindowRefills",
    "AnOrphanedObjectKeepsItsResidentBlocksUnderMemoryPressure",
    "StressWritersAndReaderProcessesOverFourTimesTheWindow",
    "AFaultWaitingForARangeDoesNotHoldItsEntry",
    "WindowWithoutAServerFillsThenGivesENOSPCUntilPunched",
    # GUP references to a freed block's page (issue 14, item 3).
    "WindowAnODirectReadLandsInTheMappedBlocks",
    "WindowAPinTakenBeforeAPunchDoesNotOverwriteALaterWrite",
    "WindowAPinTakenBeforeAPunchDoesNotOverwriteALaterStore",
    "WindowASplicedPageKeepsWhatTheBlockHeld",
    # splice(2) from the object (issue 18): the pipe keeps a copy, the range is reused.
    "WindowASplicedReadKeepsWhatTheBlockHeldAcrossAPunchAndARewrite",
    # A REPLY's answer, pinned or copied (issue 17).
    "WindowAReplyStuckPinningItsAnswerDoesNotKeepTheLoadFromTimingOut",
    "WindowARunGoesInFromAnAlignedOrUnalignedAnswerAndAnUnreadableOneIsEFAULT",
    "AStoreThroughAPinDoesNotLandOnTheBlockReloadedAfterAnInvalidate",
    # A free range without memory (issue 14, item 9c).
    "AFreeRangeWithoutMemoryGetsSomeOrTheAccessFails",
    # A server of runs (region loads, issue 17), and the reclaim that keeps refaults.
    "StressWritersAndReaderProcessesOverFourTimesTheWindowWithRuns",
    "MappedPassesOverFourTimesTheWindowLoadRunsAndStayWithinIt",
    "RandomLoadsBeyondTheWindowTakePagesOfTheirOwnAndStayWithinIt",
    # ... that takes STOREs of runs: a reclaim writes a dirty region back in one.
    "AReclaimWritesARegionStoredIntoWholeBackInOneStore",
}
# Async readahead (issue 17), with window_mb=16.
READAHEAD_SCENARIOS = {
    "PassesMappedByPtesSendEachRegionBeforeTheReaderGetsThere",
    "APassMappedByPmdsLoadsEachRegionWholeAndReadsAhead",
    "ReadsOfOneMiBSendTheNextRegionAsFaultsDo",
    "AnInvalidationOfARegionSentAheadDropsThatPartOfItsAnswer",
}
PMD_SCENARIOS = {
    "ReadsOfAResidentRegionMapItWithOnePmd",
    "ARegionWithAHoleIsMappedByPtes",
    "GupThroughAPmdReadsAndWritesTheBlocks",
    "StoresThroughAPmdAndWritesSeeEachOther",
    "APageMappingDowngradesTheRegionSoThatAPunchStillUnmapsIt",
    "APartialPunchUnmapsThePmdAndTheRestFaultsBack",
    "AShrinkIntoAPmdRegionUnmapsIt",
    "APunchWaitsForAPmdFaultHoldingItsRegion",
    "StressPmdAndPteFaultsWithPunchesAndWrites",
    "StoresThroughAPmdReachTheServerAtFsync",
}
# Fault-around parked after its lookup, counted (issue 17), with fault_around=16.
AROUND = "WindowAFaultAroundThatReadTheBlockMapBeforeAPunchIsWaitedFor"
DEADLOCK = "AFaultWaitingForARangeDoesNotHoldItsEntry"
DOWNGRADE = "APageMappingDowngradesTheRegionSoThatAPunchStillUnmapsIt"
STALE_AHEAD = "AnInvalidationOfARegionSentAheadDropsThatPartOfItsAnswer"
# The reclaims that must write back first: write(2)'s inline one, a fault's.
WRITEBACK = ("WritesReclaimInlineAndNothingWrittenIsLost",
             "StoresReclaimInTheirFaultsAndNothingStoredIsLost")
# Each pin scenario and what it reports when a pin's store lands on the index's next block.
PINS = {
    "WindowAPinTakenBeforeAPunchDoesNotOverwriteALaterWrite": "overwrote a write(2)",
    "WindowAPinTakenBeforeAPunchDoesNotOverwriteALaterStore": "overwrote a store",
    "WindowASplicedPageKeepsWhatTheBlockHeld": "never waited for the pipe",
    "AStoreThroughAPinDoesNotLandOnTheBlockReloadedAfterAnInvalidate": "landed on the block",
}
FIXED = {"name", "file", "line", "status", "result", "timestamp", "time", "classname",
         "failures"}


def results(report):
    """{test name: (failures, seconds, properties)} of a gtest JSON report."""
    data = json.loads(report.read_text())
    return {t["name"]: ("\n".join(f["failure"] for f in t.get("failures", [])),
                        float(t["time"].rstrip("s")),
                        {k: v for k, v in t.items() if k not in FIXED})
            for s in data["testsuites"] for t in s["testsuite"]}


# The module goes while its reclaim worker may run: VMCOH_RMMOD_LOOPS loads
# (5 here; the closing note of issue 14 reports 50) on the debug kernels,
# where KASAN would see the worker use the freed inode and kmemleak what a
# load left behind.
RMMOD_LOOPS = int(os.environ.get("VMCOH_RMMOD_LOOPS", "5"))


def run_window(results_dir, kernel, which, **kwargs):
    """tests/guest/window.sh's runs `which` (words), in one boot: (vmrun's result, {run: its
    gtest results}); "safe" is three, safe, around and readahead, and "variants" five:
    pmd_downgrade_no_unmap, reuse_pinned, no_store_wait, drop_skips_writeback and
    load_after_invalidate."""
    module = module_for(kernel)
    assert module.exists(), f"{module} missing: make module-{kernel}"
    out = results_dir / f"window-{kernel}"
    out.mkdir(exist_ok=True)
    runs = [run for word in which.split()
            for run in {"variants": ["pmd_downgrade_no_unmap", "reuse_pinned",
                                     "no_store_wait", "drop_skips_writeback",
                                     "load_after_invalidate"],
                        "safe": ["safe", "around", "readahead"],
                        "rmmod": []}.get(word, [word])]
    for run in runs:
        (out / f"window-{run}.json").unlink(missing_ok=True)
    timeout = 900 + (60 * RMMOD_LOOPS if "rmmod" in which.split() else 0)
    proc = vmrun(["tests/guest/window.sh", out, module, which],
                 log=f"window-{which.replace(' ', '-')}-{kernel}", kernel=kernel,
                 timeout=timeout, **kwargs)
    assert proc.returncode == 0, explain(proc)
    for run in runs:
        assert (out / f"window-{run}.json").exists(), f"no report of {run}; {explain(proc)}"
    return proc, {run: results(out / f"window-{run}.json") for run in runs}


# The safe runs, the variants and, on a debug kernel, the rmmod loops share one boot per kernel:
# under xdist, one worker.
@functools.cache
def safe_and_variants(results_dir, kernel):
    """(vmrun's result, {run: its gtest results})."""
    which = "safe variants" + (" rmmod" if is_debug_kernel(kernel) else "")
    return run_window(results_dir, kernel, which, env={"VMCOH_RMMOD_LOOPS": RMMOD_LOOPS})


ONE_BOOT = [pytest.param(k, marks=pytest.mark.xdist_group(f"window-{k}")) for k in KERNELS]


@pytest.mark.parametrize("kernel", ONE_BOOT)
def test_window_and_pmd_scenarios_pass(built, results_dir, kernel):
    runs = safe_and_variants(results_dir, kernel)[1]
    assert set(runs["readahead"]) == READAHEAD_SCENARIOS
    assert set(runs["around"]) == {AROUND}
    found = runs["safe"] | runs["around"] | runs["readahead"]
    assert set(found) == SCENARIOS | PMD_SCENARIOS | READAHEAD_SCENARIOS | {AROUND}
    for name, (failures, seconds, properties) in sorted(found.items()):
        assert not failures, f"safe module failed {name}:\n{failures}"
        print(f"{kernel} safe: {name} passed in {seconds:.3f} s {properties}")


@pytest.mark.parametrize("kernel", KERNELS)
def test_reclaim_in_fault_deadlock_is_reported(built, results_dir, kernel):
    proc, runs = run_window(results_dir, kernel, "reclaim_in_fault", allow_splat=True)
    found = runs["reclaim_in_fault"]
    failures, seconds, _ = found[DEADLOCK]
    assert "deadlock: a fault reclaims a range holding the entry" in failures, \
        f"reclaim_in_fault not caught:\n{failures or 'passed'}"
    # Both sides, by their stacks: the fault's reclaim, the INVALIDATE's wait for the entry.
    for frame in ("window_reclaim_one", "vmcoh_fault", "vmcoh_backing_invalidate", "entry_wait"):
        assert frame in failures, f"{frame} missing from the reported stacks:\n{failures}"
    lockdep = "possible circular locking dependency" in proc.stderr
    print(f"{kernel} reclaim_in_fault: caught by {DEADLOCK} in {seconds:.3f} s"
          f"{'; lockdep reports it too' if lockdep else ''}")


def expect_caught(runs, kernel, variant, symptoms):
    """The run of unsafe=`variant` ran exactly the scenarios of `symptoms` ({name: what its
    failure says}), and each failed saying so."""
    found = runs[variant]
    assert set(found) == set(symptoms)
    for name, symptom in symptoms.items():
        failures, seconds, _ = found[name]
        assert symptom in failures, f"{variant} not caught by {name}:\n{failures or 'passed'}"
        print(f"{kernel} {variant}: caught by {name} in {seconds:.3f} s")


@pytest.mark.parametrize("kernel", ONE_BOOT)
def test_window_variants_are_caught(built, results_dir, kernel):
    runs = safe_and_variants(results_dir, kernel)[1]
    found = runs["pmd_downgrade_no_unmap"]
    failures, seconds, _ = found[DOWNGRADE]
    assert "the PMD outlived its 2 MiB entry" in failures, \
        f"pmd_downgrade_no_unmap not caught:\n{failures or 'passed'}"
    others = sorted(name for name, (fails, _, _) in found.items() if fails and name != DOWNGRADE)
    print(f"{kernel} pmd_downgrade_no_unmap: caught by {DOWNGRADE} in {seconds:.3f} s"
          f"{'; also failed: ' + ', '.join(others) if others else ''}")

    expect_caught(runs, kernel, "reuse_pinned", PINS)
    # An invalidation waits for the counted fault-arounds that read the block map before it.
    expect_caught(runs, kernel, "no_store_wait", {AROUND: "the punched block stayed mapped"})
    # A reclaim writes a range's dirty blocks back before it lets the range go: write(2)'s
    # inline reclaim and a fault's, which reclaims once it has let go of its locks.
    expect_caught(runs, kernel, "drop_skips_writeback",
                  dict.fromkeys(WRITEBACK, "lost at the server"))
    # A run's answer goes into the window in batches: the part invalidated in flight must not.
    expect_caught(runs, kernel, "load_after_invalidate",
                  {STALE_AHEAD: "the answer sent before the INVALIDATE was installed"})


@pytest.mark.parametrize("kernel", [p for p in ONE_BOOT if is_debug_kernel(p.values[0])])
def test_rmmod_after_serving_and_reclaiming_leaves_a_clean_kernel(built, results_dir, kernel):
    """tests/guest/rmmod.sh's loops, last in the kernel's window boot: its kmemleak scan and
    splat check judge them too."""
    proc = safe_and_variants(results_dir, kernel)[0]
    assert f"rmmod: loop {RMMOD_LOOPS} of {RMMOD_LOOPS} done" in proc.stdout, explain(proc)
