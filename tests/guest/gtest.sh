#!/bin/sh
# Inside the VM: run the GoogleTest suite against a freshly loaded module,
# then the -ENOSPC test against a module loaded with a small cap.  The
# scenarios that need test hooks or a window (2 MiB mappings need one) run
# in backing.sh and window.sh.
# $1: directory for the JSON reports; $2: the module (default: ./vmcoh.ko).
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
out=$1
module=${2:-$top/vmcoh.ko}
gtest=$top/build/tests/gtest/vmcoh-gtest
status=0

# Three pinned-I/O cases need a block-device file system in $TMPDIR (O_DIRECT
# that pins, then submits): the guest has none here (its /tmp is tmpfs, 9p
# copies segment by segment).  They run on the host; in the guest,
# tools/fsmatrix's ext4 and xfs rows drive the same O_DIRECT pins
# (pin-vs-punch's dio method).
host_only='PinnedIoTest.ODirectProbeAccepts*:PinnedIoTest.AnODirectRead*:PinnedIoTest.ALongTermPin*'
insmod "$module"
"$gtest" --gtest_filter="-CapTest.*:HoldPointTest.*:ZeroPageBoundTest.*:BackingHoldTest.*:WritebackHoldTest.*:WritebackRunsHoldTest.*:AttachHoldTest.*:Window*:DeviceTest.Window*:Pmd*:$host_only" --gtest_output="json:$out/gtest.json" ||
	status=$?
rmmod vmcoh

# A 16 MiB cap makes filling it quick; the object is larger than the cap.
insmod "$module" size_mb=32 max_mb=16
"$gtest" --gtest_filter='CapTest.*' --gtest_output="json:$out/gtest-cap.json" ||
	status=$?
rmmod vmcoh
exit "$status"
