#!/bin/sh
# Inside the VM: the minimal example server (userspace/examples/minimal_server.cpp) serves a
# file of 16 MiB of random bytes through a window of 4 MiB (two ranges), so most of it is
# reclaimed and loaded again.  read(2) of /dev/vmcoh, and two passes through a mapping of it,
# must show the file; SIGTERM must end the server with status 0.
# $1: the module (default: ./vmcoh.ko).
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
module=${1:-$top/vmcoh.ko}
server=$top/build/userspace/vmcoh-minimal-server
data=/tmp/example-server.data
log=/tmp/example-server.log

head -c $((16 << 20)) /dev/urandom >"$data"
insmod "$module" window_mb=4
"$server" "$data" 2>"$log" &
pid=$!
tries=0
until grep -q serving "$log"; do
	tries=$((tries + 1))
	if [ "$tries" -gt 100 ] || ! kill -0 "$pid" 2>/dev/null; then
		cat "$log"
		echo "example: the server never attached"
		exit 1
	fi
	sleep 0.1
done
cat "$log"
status=0
cmp "$data" /dev/vmcoh || status=1
python3 - "$data" <<'PY' || status=1
import mmap, sys
want = open(sys.argv[1], "rb").read()
with open("/dev/vmcoh", "rb") as dev:
    view = mmap.mmap(dev.fileno(), len(want), prot=mmap.PROT_READ)
    for npass in (1, 2):
        if view[:] != want:
            sys.exit(f"example: pass {npass} through a mapping differs from the file")
    view.close()
PY
kill -TERM "$pid"
rc=0
wait "$pid" || rc=$?
if [ "$rc" -ne 0 ]; then
	echo "example: the server exited with status $rc"
	status=1
fi
rmmod vmcoh
[ "$status" -eq 0 ] && echo "example: ok"
exit "$status"
