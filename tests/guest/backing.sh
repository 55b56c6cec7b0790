#!/bin/sh
# Inside the VM: the scenarios of backed objects - loads racing invalidation,
# dirty data across coherence-lock drops, stores into a run being written
# back, a server in the faulting process -
# with the safe module and with
# each unsafe variant of the protocol, which they must catch.  test_hooks=1
# (the variants and hold points need it); load_timeout_ms bounds the stall
# of invalidate_waits_load.
# $1: directory for the JSON reports; $2: the module (default: ./vmcoh.ko).
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
out=$1
module=${2:-$top/vmcoh.ko}
gtest=$top/build/tests/gtest/vmcoh-gtest
load='BackingTest.ALoadInvalidatedInFlightIsDroppedAndRedone'
load="$load:BackingTest.StressNoReadSeesAGenerationOlderThanTheLastInvalidation"
load="$load:RegionBackingTest.ALoadOfARunInvalidatedInPartIsRedoneForThatPartOnly"
load="$load:RegionBackingTest.StressNoReadOfARunSeesAGenerationOlderThanTheLastInvalidation"
writeback='WritebackTest.DirtyDataSurvivesADrop'
writeback="$writeback:WritebackTest.StressNothingWrittenIsLostAcrossDropsAndFsyncs"
runs='WritebackRunsHoldTest.AStoreBeforeItsRunIsWriteProtectedReachesTheServer'
runs="$runs:WritebackRunsTest.StressNothingWrittenInRunsIsLostAcrossDropsAndFsyncs"
deadlock='WritebackHoldTest.ADropDoesNotWaitForAFaultThatWaitsForIt'
mmap_lock='BackingTest.AFaultWaitingForTheServerAgainLetsGoOfMmapLock'
status=0

# run NAME FILTER [MODULE PARAMETER...]
run() {
	name=$1
	filter=$2
	shift 2
	rm -f "$out/backing-$name.json"
	insmod "$module" test_hooks=1 load_timeout_ms=4000 "$@"
	rc=0
	"$gtest" --gtest_filter="$filter" \
		--gtest_output="json:$out/backing-$name.json" || rc=$?
	echo "backing: $name: vmcoh-gtest exit $rc"
	rmmod vmcoh || status=1
}

# The safe module runs the deterministic scenarios and the interleavings driven
# by hold points; its stress scenarios run in gtest.sh's boot, with the module
# as users load it (test_hooks=0: fault-around on).
run safe "$load:$writeback:$runs:$mmap_lock:BackingHoldTest.*:WritebackHoldTest.*:AttachHoldTest.*:-*.Stress*"
for variant in load_after_invalidate invalidate_waits_load; do
	run "$variant" "$load" unsafe="$variant"
done
run drop_skips_writeback "$writeback" unsafe=drop_skips_writeback
run writeback_copy_before_unmap "$runs" unsafe=writeback_copy_before_unmap
# Not under stress: with nobody to kill the faulting task, it would hang.
run drop_under_entry_lock "$deadlock" unsafe=drop_under_entry_lock
run wait_holding_mmap_lock "$mmap_lock" unsafe=wait_holding_mmap_lock
exit "$status"
