#!/bin/sh
# Inside the VM: load, map, serve, reclaim, kill the server, close, rmmod -
# VMCOH_RMMOD_LOOPS times (default 5) - with memory pressure asking the
# window's worker to reclaim as the module goes (issue 14, item 4).  Each
# load runs two window scenarios: stores through a mapping whose range is
# reclaimed (a writable server, STOREs), and an orphaned object under
# drop_caches (the server dies).  vmrun's kmemleak scan and splat check
# judge the kernel afterwards.
# $1: the module (default: ./vmcoh.ko).
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
module=${1:-$top/vmcoh.ko}
gtest=$top/build/tests/gtest/vmcoh-gtest
loops=${VMCOH_RMMOD_LOOPS:-5}
filter='WindowTest.StoresThroughAMappingSurviveTheReclaimOfTheirRange'
filter="$filter:WindowTest.AnOrphanedObjectKeepsItsResidentBlocksUnderMemoryPressure"

i=0
while [ "$i" -lt "$loops" ]; do
	i=$((i + 1))
	insmod "$module" window_mb=4
	"$gtest" --gtest_filter="$filter" --gtest_brief=1 >/tmp/rmmod-gtest.log 2>&1 || {
		cat /tmp/rmmod-gtest.log
		echo "rmmod: loop $i: vmcoh-gtest failed" >&2
		exit 1
	}
	echo 3 >/proc/sys/vm/drop_caches &
	rmmod vmcoh
	wait
	echo "rmmod: loop $i of $loops done"
done
