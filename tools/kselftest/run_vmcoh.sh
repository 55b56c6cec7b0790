#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# kselftest collection "vmcoh" (docs/kselftest.md): the module behind
# /dev/vmcoh and its harness, as KTAP.  Installed by `make kselftest-install
# DESTDIR=...` next to the module for each kernel it was built for
# (modules/RELEASE/vmcoh.ko), vmcoh-gtest, vmcoh-race and vmcoh-interleave.
#
# Steps, one KTAP result each (the ones with cases nest them):
#   load           the module for `uname -r` (ours, else one modprobe finds:
#                  DKMS's); /dev/vmcoh appears
#   gtest          vmcoh-gtest --ktap: every case that needs no module
#                  parameter, nested
#   race           vmcoh-race, every scenario, threads and processes,
#                  VMCOH_KSFT_SECONDS each (default 2), nested
#   interleavings  reloaded with test_hooks=1 (and unsafe=$VMCOH_UNSAFE if
#                  set, which must then fail): vmcoh-interleave, nested
#   unload         rmmod
#   kernel log     no WARNING, BUG, KASAN, lockdep or KCSAN report since the
#                  start
#
# VMCOH_KSFT_ONLY="race interleavings" runs only those of gtest, race and
# interleavings.  Exit status as kselftest wants it: 0 all passed, 1 a step
# failed, 4 skipped (not root, or no module for this kernel).
set -u
cd "$(dirname "$0")" || exit 1

ksft_pass=0
ksft_fail=1
ksft_skip=4
seconds=${VMCOH_KSFT_SECONDS:-2}
only=${VMCOH_KSFT_ONLY:-gtest race interleavings}
unsafe=${VMCOH_UNSAFE:-}
release=$(uname -r)
module=modules/$release/vmcoh.ko
number=0
status=$ksft_pass

echo "KTAP version 1"

skip_all() {
	echo "1..0 # SKIP $1"
	exit "$ksft_skip"
}

if [ "$(id -u)" -ne 0 ]; then
	skip_all "not root: loading the module needs CAP_SYS_MODULE"
fi
if [ ! -e "$module" ]; then
	module=
	modinfo vmcoh >/dev/null 2>&1 ||
		skip_all "no vmcoh.ko for $release here, and modprobe finds none"
fi

wanted() {
	case " $only " in *" $1 "*) return 0 ;; esac
	return 1
}

plan=3
for step in gtest race interleavings; do
	if wanted "$step"; then
		plan=$((plan + 1))
	fi
done
echo "1..$plan"

# result OK NAME [DIRECTIVE]
result() {
	number=$((number + 1))
	if [ "$1" -eq 0 ]; then
		echo "ok $number $2${3:+ # $3}"
	else
		echo "not ok $number $2"
		status=$ksft_fail
	fi
}

# load [PARAMETERS...]: our module for this kernel, else modprobe's.
load() {
	if [ -n "$module" ]; then
		insmod "$module" "$@"
	else
		modprobe vmcoh "$@"
	fi
}

# nested NAME COMMAND...: run a step whose own KTAP (or TAP) becomes a
# subtest, indented by four spaces as KTAP nests, under the header the KTAP
# spec prefers (version, "# Subtest: NAME", then the step's plan).
nested() {
	name=$1
	shift
	printf '    KTAP version 1\n    # Subtest: %s\n' "$name"
	rc_file=$(mktemp)
	{
		"$@" 2>&1
		echo $? >"$rc_file"
	} | sed -e '/^K\{0,1\}TAP version/d' -e 's/^/    /'
	rc=$(cat "$rc_file")
	rm -f "$rc_file"
	result "$rc" "$name"
}

log_start=$(dmesg | wc -l)

if [ -e /sys/module/vmcoh ]; then
	rmmod vmcoh 2>/dev/null ||
		skip_all "vmcoh is loaded and in use"
fi
load && [ -c /dev/vmcoh ]
loaded=$?
result "$loaded" "load ${module:-vmcoh (modprobe)} on $release"
if [ "$loaded" -ne 0 ]; then
	echo "# the module did not load: the rest cannot run"
	exit "$ksft_fail"
fi

if wanted gtest; then
	# As tests/guest/gtest.sh: cases that need test hooks, a window or a
	# cap run elsewhere, and three pinned-I/O cases need a block file system.
	nested gtest ./vmcoh-gtest --ktap \
		--gtest_filter='-CapTest.*:HoldPointTest.*:ZeroPageBoundTest.*:BackingHoldTest.*:WritebackHoldTest.*:WritebackRunsHoldTest.*:AttachHoldTest.*:Window*:DeviceTest.Window*:Pmd*:PinnedIoTest.ODirectProbeAccepts*:PinnedIoTest.AnODirectRead*:PinnedIoTest.ALongTermPin*'
fi

if wanted race; then
	nested race ./vmcoh-race --mode both --duration "$seconds" --format tap
fi

if wanted interleavings; then
	rmmod vmcoh && load test_hooks=1 ${unsafe:+unsafe=$unsafe}
	nested interleavings ./vmcoh-interleave --repeat 3 --format tap
fi

rmmod vmcoh
result $? "unload"

splats=$(dmesg | tail -n +"$((log_start + 1))" |
	grep -E 'WARNING:|BUG:|KASAN:|UBSAN:|possible circular locking|possible recursive locking|KCSAN:|general protection fault|Oops' |
	head -n 5)
if [ -n "$splats" ]; then
	echo "$splats" | sed -e 's/^/# /'
fi
[ -z "$splats" ]
result $? "kernel log clean"

exit "$status"
