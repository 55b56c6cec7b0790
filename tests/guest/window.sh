#!/bin/sh
# Inside the VM: the 2 MiB mappings (tests/gtest/device_pmd_test.cpp), then
# the window scenarios (tests/gtest/device_window_test.cpp), in one module
# load with a window of two ranges (window_mb=4) - the object is four times
# that - against the safe module; the fault that reclaims inline against
# unsafe=reclaim_in_fault,
# which deadlocks and must be reported by the scenario's watchdog; and
# ("variants") the 2 MiB scenarios against unsafe=pmd_downgrade_no_unmap,
# which one must catch, then the pin scenarios against unsafe=reuse_pinned,
# which every one must catch, and the parked fault-around against
# unsafe=no_store_wait.  "safe" also runs the readahead scenarios with
# window_mb=16 (readahead needs four ranges).
# Separate runs, because a debug kernel's lockdep also reports the first
# variant's deadlock: the caller allows splats for it only.
# $1: directory for the JSON reports; $2: the module (default: ./vmcoh.ko);
# $3: safe (default), reclaim_in_fault, variants or rmmod, or several of
# them (e.g. "safe variants rmmod", one boot for all).  "safe" also runs the
# parked fault-around ("around"), with fault_around=16.
# VMCOH_WINDOW_MB: the window
# (default 4).  One range is too few for the stress scenario: five tasks on
# four regions then take it from each other before their loads complete.
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
out=$1
module=${2:-$top/vmcoh.ko}
runs=${3:-safe}
gtest=$top/build/tests/gtest/vmcoh-gtest
around='DeviceTest.WindowAFaultAround*'
status=0

# run NAME FILTER [MODULE PARAMETER...]
run() {
	name=$1
	filter=$2
	shift 2
	rm -f "$out/window-$name.json"
	insmod "$module" window_mb="${window_mb:-${VMCOH_WINDOW_MB:-4}}" \
		test_hooks="${test_hooks:-1}" "$@"
	rc=0
	"$gtest" --gtest_filter="$filter" \
		--gtest_output="json:$out/window-$name.json" || rc=$?
	echo "window: $name: vmcoh-gtest exit $rc"
	rmmod vmcoh || status=1
}

for which in $runs; do
case $which in
safe)
	run safe 'Pmd*:WindowTest.*:WindowRunsTest.*:WindowHoldTest.*:DeviceTest.Window*:-DeviceTest.WindowAFaultAround*'
	# Fault-around parked after its lookup, counted: test_hooks=1 turns
	# fault-around off unless fault_around is given.
	run around "$around" fault_around=16
	# Readahead needs a window of four ranges or more, and fault-around,
	# which test_hooks=1 turns off.
	window_mb=16 test_hooks=0
	run readahead 'WindowReadaheadTest.*'
	window_mb= test_hooks= ;;
reclaim_in_fault) run reclaim_in_fault 'WindowHoldTest.*' unsafe=reclaim_in_fault ;;
variants)
	run pmd_downgrade_no_unmap 'PmdTest.*' unsafe=pmd_downgrade_no_unmap
	run reuse_pinned 'DeviceTest.WindowAPinTaken*:DeviceTest.WindowASplicedPage*:WindowTest.AStoreThroughAPin*' \
		unsafe=reuse_pinned
	# An invalidation waits for the counted fault-arounds of the
	# generation before it (invalidate.c, step 3b).
	run no_store_wait "$around" fault_around=16 unsafe=no_store_wait
	# A reclaim - by write(2) inline, or by a fault - writes back first.
	run drop_skips_writeback 'WindowTest.WritesReclaimInline*:WindowTest.StoresReclaimInTheirFaults*' \
		unsafe=drop_skips_writeback
	# Answers go into a window in batches (backing.c), which must drop
	# the part of a run invalidated in flight; readahead needs 4 ranges.
	window_mb=16
	run load_after_invalidate 'WindowReadaheadTest.AnInvalidationOfARegionSentAhead*' \
		unsafe=load_after_invalidate
	window_mb= ;;
# Loads, serves, reclaims and unloads VMCOH_RMMOD_LOOPS times (tests/guest/rmmod.sh).
rmmod) "$top/tests/guest/rmmod.sh" "$module" || status=1 ;;
*) echo "window.sh: unknown run $which" >&2; exit 2 ;;
esac
done
exit "$status"
