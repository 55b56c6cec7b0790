#!/bin/sh
# Inside the VM: the kselftest collection that `make kselftest-install` laid
# out in $1, run by the kernel's own run_kselftest.sh three times, each
# output to $2 (through a pipe, as a fleet's harness reads it):
#   run.tap   every step, which must pass (short: the same binaries run at
#             length in the other tests);
#   skip.tap  as an unprivileged user, which must skip (exit 4);
#   fail.tap  its interleavings against unsafe=lookup_before_lock, which
#             must fail (exit 1).
# Each NAME.tap ends with the runner's own exit status as "rc=N".
set -u
dest=$1
out=$2

{
	VMCOH_KSFT_SECONDS=0.5 VMCOH_STRESS_SECONDS=1 "$dest/run_kselftest.sh" -c vmcoh 2>&1
	echo "rc=$?"
} | cat >"$out/run.tap"

# The pipe is the user's own, as its /dev/stdout must be to open it.
skip=$(mktemp)
chmod 666 "$skip"
setpriv --reuid=65534 --regid=65534 --clear-groups sh -c '
	{ "$1/run_kselftest.sh" -t vmcoh:run_vmcoh.sh 2>&1; echo "rc=$?"; } | cat >"$2"' \
	sh "$dest" "$skip"
cp "$skip" "$out/skip.tap"

{
	VMCOH_KSFT_ONLY=interleavings VMCOH_UNSAFE=lookup_before_lock \
		"$dest/run_kselftest.sh" -t vmcoh:run_vmcoh.sh 2>&1
	echo "rc=$?"
} | cat >"$out/fail.tap"
