#!/usr/bin/python3
"""Inside the VM: vmcoh's trace events, through tracefs.

usage: trace.py OUT MODULE

Four runs, each with every event of vmcoh enabled and its own trace in OUT:

  plain.txt   a plain object (fault-around on): write(2) into holes, a read
              fault on blocks (->map_pages), one on a hole (->fault, the zero
              page), a store on the zero page and one into a hole
              (->page_mkwrite), a punch, a shrink, and a load beyond EOF
              (SIGBUS, in a child);
  wait.txt    vmcoh-interleave's write-vs-fault (test_hooks=1): write(2)'s
              invalidation sleeps on the entry lock a parked fault holds;
  served.txt  the minimal example server behind a window of 8 MiB: loads,
              the server's requests, reclaims and their DROPs;
  pmd.txt     a plain object in a window: a region written whole by write(2)
              is resident, and a read fault maps it by one PMD.

Then, where the kernel and the host have them, the documented tools:
bpftrace with tools/fault-latency.bt (bpftrace.txt) and trace-cmd
(trace-cmd.txt), each over a read of a mapping.  The host side
(tests/test_trace.py) reads the traces.
"""

import fcntl
import mmap
import os
import shutil
import signal
import struct
import subprocess
import sys
import time

TOP = os.path.realpath(os.path.join(os.path.dirname(__file__), "..", ".."))
PAGE = 4096
TRACEFS = "/sys/kernel/tracing"


def ioc(direction, nr, size):
    return (direction << 30) | (size << 16) | (0xC7 << 8) | nr


SET_SIZE = ioc(1, 1, 32)      # struct vmcoh_set_size
PUNCH_HOLE = ioc(1, 2, 32)    # struct vmcoh_range


def tracefs():
    if not os.path.exists(os.path.join(TRACEFS, "trace")):
        subprocess.run(["mount", "-t", "tracefs", "nodev", TRACEFS], check=True)


def tfs_write(name, value):
    with open(os.path.join(TRACEFS, name), "w") as f:
        f.write(value)


class Traced:
    """insmod, every vmcoh event on, the run, the trace to OUT/NAME, rmmod."""

    def __init__(self, out, name, module, *params):
        self.path = os.path.join(out, name)
        self.module, self.params = module, params

    def __enter__(self):
        subprocess.run(["insmod", self.module, *self.params], check=True)
        tfs_write("buffer_size_kb", "8192")
        tfs_write("trace", "")
        tfs_write("events/vmcoh/enable", "1")
        return self

    def __exit__(self, *exc):
        tfs_write("events/vmcoh/enable", "0")
        shutil.copyfile(os.path.join(TRACEFS, "trace"), self.path)
        subprocess.run(["rmmod", "vmcoh"], check=True)
        return False


def plain(out, module):
    with Traced(out, "plain.txt", module):
        fd = os.open("/dev/vmcoh", os.O_RDWR)
        fcntl.ioctl(fd, SET_SIZE, struct.pack("4Q", 64 * PAGE, 0, 0, 0))
        os.pwrite(fd, b"w" * (4 * PAGE), 0)                 # blocks 0-3
        m = mmap.mmap(fd, 64 * PAGE, mmap.MAP_SHARED)
        tfs_write("trace_marker", "vmcoh-test: read blocks")
        assert m[0:1] == b"w"                               # ->map_pages
        tfs_write("trace_marker", "vmcoh-test: read hole")
        assert m[8 * PAGE] == 0                             # ->fault: zero page
        tfs_write("trace_marker", "vmcoh-test: store on the zero page")
        m[8 * PAGE] = 1                                     # ->page_mkwrite
        tfs_write("trace_marker", "vmcoh-test: store into a hole")
        m[12 * PAGE] = 2                                    # ->fault, store
        tfs_write("trace_marker", "vmcoh-test: punch")
        fcntl.ioctl(fd, PUNCH_HOLE, struct.pack("4Q", 0, 4 * PAGE, 0, 0))
        tfs_write("trace_marker", "vmcoh-test: shrink")
        fcntl.ioctl(fd, SET_SIZE, struct.pack("4Q", 8 * PAGE, 0, 0, 0))
        tfs_write("trace_marker", "vmcoh-test: beyond EOF")
        pid = os.fork()
        if pid == 0:
            _ = m[20 * PAGE]                                # SIGBUS
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        if not os.WIFSIGNALED(status) or os.WTERMSIG(status) != signal.SIGBUS:
            sys.exit(f"trace: a load beyond EOF ended with status {status:#x}, not SIGBUS")
        tfs_write("trace_marker", "vmcoh-test: end")
        m.close()
        os.close(fd)


def wait(out, module):
    with Traced(out, "wait.txt", module, "test_hooks=1"):
        subprocess.run([os.path.join(TOP, "build/userspace/vmcoh-interleave"),
                        "--interleaving", "linux-mm-2017-write-vs-fault", "--repeat", "2"],
                       check=True)


def served(out, module):
    data = "/tmp/trace-server.data"
    with open(data, "wb") as f:
        f.write(os.urandom(16 << 20))
    with Traced(out, "served.txt", module, "window_mb=8"):
        log = open("/tmp/trace-server.log", "w+")
        server = subprocess.Popen([os.path.join(TOP, "build/userspace/vmcoh-minimal-server"), data],
                                  stderr=log)
        try:
            for _ in range(200):
                log.seek(0)
                if "serving" in log.read():
                    break
                time.sleep(0.05)
            else:
                sys.exit("trace: the example server never attached")
            want = open(data, "rb").read()
            with open("/dev/vmcoh", "rb") as dev:
                view = mmap.mmap(dev.fileno(), len(want), prot=mmap.PROT_READ)
                if view[:] != want:
                    sys.exit("trace: a mapping of the served object differs from its file")
                view.close()
        finally:
            server.terminate()
            server.wait()


READER = """import mmap, os
fd = os.open("/dev/vmcoh", os.O_RDWR)
m = mmap.mmap(fd, 1 << 20, mmap.MAP_SHARED)
for i in range(0, 1 << 20, 4096):
    m[i] = 1
"""


def pmd(out, module):
    with Traced(out, "pmd.txt", module, "window_mb=8"):
        fd = os.open("/dev/vmcoh", os.O_RDWR)
        fcntl.ioctl(fd, SET_SIZE, struct.pack("4Q", 4 << 20, 0, 0, 0))
        os.pwrite(fd, b"p" * (2 << 20), 0)
        m = mmap.mmap(fd, 4 << 20, mmap.MAP_SHARED, mmap.PROT_READ)
        assert m[0:1] == b"p"
        m.close()
        os.close(fd)


def tools(out, module):
    """The documented commands (docs/tracing.md), where they can run."""
    reader = "/tmp/trace-reader.py"
    with open(reader, "w") as f:
        f.write(READER)
    command = f"{sys.executable} {reader}"
    bpftrace = shutil.which("bpftrace")
    # bpftrace needs BPF (not in the debug kernels' configs).
    if bpftrace and os.path.exists("/sys/fs/bpf"):
        subprocess.run(["insmod", module], check=True)
        try:
            with open(os.path.join(out, "bpftrace.txt"), "w") as f:
                proc = subprocess.run([bpftrace, os.path.join(TOP, "tools/fault-latency.bt"),
                                       "-c", command], stdout=f, stderr=subprocess.STDOUT,
                                      timeout=300, check=False)
                f.write(f"\nbpftrace exit {proc.returncode}\n")
        finally:
            subprocess.run(["rmmod", "vmcoh"], check=True)
    trace_cmd = shutil.which("trace-cmd")
    if trace_cmd:
        subprocess.run(["insmod", module], check=True)
        try:
            dat = "/tmp/trace.dat"
            rec = subprocess.run([trace_cmd, "record", "-q", "-o", dat, "-e", "vmcoh:vmcoh_fault*",
                                  sys.executable, reader], capture_output=True, text=True,
                                 check=False)
            rep = subprocess.run([trace_cmd, "report", "-i", dat], capture_output=True, text=True,
                                 check=False)
            with open(os.path.join(out, "trace-cmd.txt"), "w") as f:
                f.write(rep.stdout)
                f.write(f"\ntrace-cmd record exit {rec.returncode}, report exit "
                        f"{rep.returncode}\n{rec.stderr}{rep.stderr}")
        finally:
            subprocess.run(["rmmod", "vmcoh"], check=True)


def main():
    out, module = sys.argv[1], sys.argv[2]
    tracefs()
    plain(out, module)
    wait(out, module)
    served(out, module)
    pmd(out, module)
    tools(out, module)
    print("trace: ok")


if __name__ == "__main__":
    main()
