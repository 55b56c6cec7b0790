/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * vmcoh: the ioctl ABI of /dev/vmcoh, shared by the module and userspace.
 *
 * Every command takes one fixed-size struct made only of __u64 fields, so
 * the layout is the same for 32-bit and 64-bit callers (compat_ioctl is a
 * plain pointer conversion).  Input structs carry a flags word and reserved
 * words: unknown flags and non-zero reserved words are rejected with
 * -EINVAL, so they can be given a meaning later without breaking old
 * binaries.  Output structs have their reserved words zeroed.
 *
 * Offsets and lengths are in bytes.  The object is made of blocks of
 * vmcoh_info.block_size bytes (PAGE_SIZE); SET_SIZE and PUNCH_HOLE take
 * block-aligned values.
 */
#ifndef _UAPI_VMCOH_H
#define _UAPI_VMCOH_H

#include <linux/const.h>
#include <linux/ioctl.h>
#include <linux/types.h>

#define VMCOH_ABI_VERSION	1
#define VMCOH_DEVICE_PATH	"/dev/vmcoh"

/* vmcoh_info.features */
#define VMCOH_FEATURE_SEEK_HOLE		_BITULL(0)	/* SEEK_DATA/SEEK_HOLE */
#define VMCOH_FEATURE_PUNCH_HOLE	_BITULL(1)	/* VMCOH_IOC_PUNCH_HOLE */
#define VMCOH_FEATURE_SET_SIZE		_BITULL(2)	/* VMCOH_IOC_SET_SIZE */
#define VMCOH_FEATURE_MAP_PRIVATE	_BITULL(3)	/* copy-on-write mappings */

struct vmcoh_info {
	__u64 abi_version;	/* VMCOH_ABI_VERSION */
	__u64 size;		/* current size of the object */
	__u64 block_size;	/* allocation unit, PAGE_SIZE */
	__u64 max_size;		/* cap on allocated bytes (max_mb) */
	__u64 max_object_size;	/* largest size SET_SIZE accepts */
	__u64 features;		/* VMCOH_FEATURE_* */
	__u64 reserved[2];
};

struct vmcoh_set_size {
	__u64 size;		/* new size, block-aligned */
	__u64 flags;		/* must be 0 */
	__u64 reserved[2];	/* must be 0 */
};

struct vmcoh_range {
	__u64 offset;		/* block-aligned */
	__u64 length;		/* block-aligned, non-zero */
	__u64 flags;		/* must be 0 */
	__u64 reserved;		/* must be 0 */
};

/*
 * Counters since the module was loaded; they only grow (blocks_live aside),
 * so a caller measures an operation by the difference of two snapshots.
 */
struct vmcoh_stats {
	__u64 faults;			/* ->fault calls */
	__u64 mkwrite_faults;		/* ->page_mkwrite calls */
	__u64 zero_page_maps;		/* holes mapped to the zero page */
	__u64 zero_page_upgrades;	/* zero page replaced by a block */
	__u64 sigbus;			/* faults answered with SIGBUS */
	__u64 entry_lock_waits;		/* sleeps on a locked entry */
	__u64 invalidations;		/* invalidate calls (write, punch, shrink) */
	__u64 ranged_unmaps;		/* unmap_mapping_range calls they issued */
	__u64 entries_removed;		/* entries removed by invalidation */
	__u64 blocks_allocated;
	__u64 blocks_freed;
	__u64 blocks_live;		/* allocated - freed */
	__u64 reserved[4];
};

#define VMCOH_IOC_MAGIC		0xC7

#define VMCOH_IOC_GET_INFO	_IOR(VMCOH_IOC_MAGIC, 0x00, struct vmcoh_info)
#define VMCOH_IOC_SET_SIZE	_IOW(VMCOH_IOC_MAGIC, 0x01, struct vmcoh_set_size)
#define VMCOH_IOC_PUNCH_HOLE	_IOW(VMCOH_IOC_MAGIC, 0x02, struct vmcoh_range)
#define VMCOH_IOC_GET_STATS	_IOR(VMCOH_IOC_MAGIC, 0x03, struct vmcoh_stats)

#endif /* _UAPI_VMCOH_H */
