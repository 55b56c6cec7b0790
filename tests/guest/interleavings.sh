#!/bin/sh
# Inside the VM: every interleaving of vmcoh-interleave against the safe
# module (test_hooks=1), then against each unsafe variant, one JSON report
# per module; then the hold-point GoogleTest cases, with and without
# test_hooks=1.
# $1: directory for the reports (safe.json and NAME.json per variant, with
#     NAME.rc holding vmcoh-interleave's exit status; gtest-hooks.json,
#     gtest-no-hooks.json);
# $2: the module (default: ./vmcoh.ko).
# VMCOH_INTERLEAVE_REPEAT: repetitions per interleaving (default 20).
# VMCOH_INTERLEAVE_MATRIX=full: every variant against every interleaving.
#
# Exits 0 when every step ran: violations are for the caller to judge from
# the reports (an unsafe variant must have them), and a kernel splat then
# still turns vmrun's status into 250.
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
out=$1
module=${2:-$top/vmcoh.ko}
interleave=$top/build/userspace/vmcoh-interleave
gtest=$top/build/tests/gtest/vmcoh-gtest
repeat=${VMCOH_INTERLEAVE_REPEAT:-20}
status=0

# run NAME [MODULE PARAMETERS...]: all interleavings against one module.
run() {
	name=$1
	shift
	insmod "$module" test_hooks=1 "$@"
	rc=0
	"$interleave" $targeted --repeat "$repeat" --format json >"$out/$name.json" ||
		rc=$?
	echo "$rc" >"$out/$name.rc"
	echo "interleavings: $name: vmcoh-interleave exit $rc"
	# 0: no violation, 1: violations; anything else is a broken run.
	if [ "$rc" -gt 1 ]; then
		status=1
	fi
	rmmod vmcoh || status=1
}

targeted=
run safe
# Each variant, unless VMCOH_INTERLEAVE_MATRIX=full, against the interleavings
# that target it only: the rest of its row is what the matrix shows, not
# what the protocol needs.
[ "${VMCOH_INTERLEAVE_MATRIX:-}" = full ] || targeted=--targeted
for variant in lookup_before_lock unmap_before_remove no_size_recheck \
	no_even_cows free_before_unmap write_no_invalidate \
	zero_unmap_after_publish no_store_wait; do
	run "$variant" unsafe="$variant"
done

# The hold-point ioctls, and the zero page's bound lowered (both need
# test_hooks=1); then the ioctls' -EPERM without it.
insmod "$module" test_hooks=1
"$gtest" --gtest_filter='HoldPointTest.*:ZeroPageBoundTest.*' \
	--gtest_output="json:$out/gtest-hooks.json" || status=1
rmmod vmcoh || status=1
insmod "$module"
"$gtest" --gtest_filter='HoldPointDisabledTest.*' \
	--gtest_output="json:$out/gtest-no-hooks.json" || status=1
rmmod vmcoh || status=1
exit "$status"
