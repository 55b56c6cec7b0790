#!/usr/bin/python3
"""Inside the VM: bad parameters are refused, unloading frees every block,
and a reload starts empty.

Tries parameters the module must refuse, then loads vmcoh.ko, writes data through write(2) and a shared mapping, checks
the stats account for it, unloads, reloads, and checks nothing survived.
"""

import fcntl
import mmap
import os
import struct
import subprocess
import sys

MODULE = os.path.join(os.path.dirname(__file__), "..", "..", "vmcoh.ko")
STATS_FIELDS = ("faults mkwrite_faults zero_page_maps zero_page_upgrades sigbus "
                "entry_lock_waits invalidations ranged_unmaps entries_removed "
                "blocks_allocated blocks_freed blocks_live").split()


def ioc(direction, nr, size):
    return (direction << 30) | (size << 16) | (0xC7 << 8) | nr


# struct vmcoh_stats (uapi/vmcoh.h): 18 __u64 since map_pages_faults and vma_lock_faults.
STATS_WORDS = 18
GET_STATS = ioc(2, 3, 8 * STATS_WORDS)


def stats(fd):
    raw = fcntl.ioctl(fd, GET_STATS, bytes(8 * STATS_WORDS))
    return dict(zip(STATS_FIELDS, struct.unpack(f"{STATS_WORDS}Q", raw)))


# Each must fail insmod (init returns -EINVAL) and leave nothing loaded.
BAD_PARAMETERS = ("fault_around=3", "fault_around=64", "max_mb=0",
                  "size_mb=2000000")


def refuses_bad_parameters():
    for bad in BAD_PARAMETERS:
        proc = subprocess.run(["insmod", MODULE, bad], capture_output=True, text=True)
        if proc.returncode == 0:
            subprocess.run(["rmmod", "vmcoh"], check=False)
            sys.exit(f"insmod vmcoh.ko {bad} succeeded; it must be refused")
        if os.path.exists("/sys/module/vmcoh"):
            sys.exit(f"insmod vmcoh.ko {bad} failed but left the module loaded")
        print(f"refused {bad}: {proc.stderr.strip()}")


def main():
    refuses_bad_parameters()
    subprocess.run(["insmod", MODULE], check=True)
    fd = os.open("/dev/vmcoh", os.O_RDWR)
    os.pwrite(fd, b"x" * (64 * 4096), 0)
    with mmap.mmap(fd, 1 << 20, mmap.MAP_SHARED) as m:
        m[512 * 1024:512 * 1024 + 4096] = b"y" * 4096
    before = stats(fd)
    os.close(fd)
    print("before unload:", before)
    if before["blocks_live"] != 65:
        sys.exit(f"expected 65 live blocks, got {before['blocks_live']}")
    subprocess.run(["rmmod", "vmcoh"], check=True)

    subprocess.run(["insmod", MODULE], check=True)
    fd = os.open("/dev/vmcoh", os.O_RDWR)
    after = stats(fd)
    data = os.pread(fd, 1 << 20, 0)
    os.close(fd)
    subprocess.run(["rmmod", "vmcoh"], check=True)
    print("after reload:", after)
    if after["blocks_live"] or after["blocks_allocated"]:
        sys.exit("a reloaded module must start with no blocks")
    if data != bytes(len(data)):
        sys.exit("a reloaded module must read zeros")
    print("reload: OK")


if __name__ == "__main__":
    main()
