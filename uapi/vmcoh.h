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
#define VMCOH_FEATURE_TEST_HOOKS	_BITULL(4)	/* loaded with test_hooks=1 */

/*
 * vmcoh_info.unsafe: the deliberately broken protocol variant the module was
 * loaded with (module parameter unsafe=NAME, only with test_hooks=1), so a
 * test can prove the harness catches it.  Each reproduces one real bug.
 */
#define VMCOH_UNSAFE_NONE		0
#define VMCOH_UNSAFE_LOOKUP_BEFORE_LOCK	1	/* fault reads block map, then locks */
#define VMCOH_UNSAFE_UNMAP_BEFORE_REMOVE 2	/* invalidation unmaps, then removes entries */
#define VMCOH_UNSAFE_NO_SIZE_RECHECK	3	/* no size check under the entry lock */
#define VMCOH_UNSAFE_NO_EVEN_COWS	4	/* shrink leaves private copies mapped */
#define VMCOH_UNSAFE_FREE_BEFORE_UNMAP	5	/* blocks freed (and poisoned) before the unmap */
#define VMCOH_UNSAFE_WRITE_NO_INVALIDATE 6	/* write(2) filling a hole does not invalidate */
#define VMCOH_NR_UNSAFE			7

/* What free_before_unmap fills a block with before it lets it go. */
#define VMCOH_POISON_BYTE		0x6b

struct vmcoh_info {
	__u64 abi_version;	/* VMCOH_ABI_VERSION */
	__u64 size;		/* current size of the object */
	__u64 block_size;	/* allocation unit, PAGE_SIZE */
	__u64 max_size;		/* cap on allocated bytes (max_mb) */
	__u64 max_object_size;	/* largest size SET_SIZE accepts */
	__u64 features;		/* VMCOH_FEATURE_* */
	__u64 unsafe;		/* VMCOH_UNSAFE_* */
	__u64 reserved[1];
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
	__u64 holds_parked;		/* tasks parked at a hold point */
	__u64 hold_timeouts;		/* parks that ended by timeout */
	__u64 fault_around_maps;	/* pages mapped around a read fault */
	__u64 reserved[1];
};

/*
 * Hold points (test hooks): a task that reaches an armed point for the armed
 * page index parks there until userspace releases it, so a test can drive
 * an exact interleaving.  They exist only when the module is loaded with
 * test_hooks=1; otherwise these ioctls fail with -EPERM.
 *
 * Fault points fire in ->fault for a fault at @index.  Invalidation points
 * fire when write(2), punch or shrink invalidates a range covering @index,
 * with io_rwsem held; @ops narrows them to some operations.  In the safe
 * protocol they come in the order MAP_CHANGED, ENTRIES_REMOVED,
 * BEFORE_UNMAP, BEFORE_FREE; the unsafe variants reorder them with the steps
 * they reorder.
 *
 * A point is one-shot: the first matching task parks and the point is
 * disarmed.  A park ends when released, after timeout_ms, when the process
 * that armed it closes that file (or exits), or on a fatal signal.
 */
#define VMCOH_HOLD_FAULT_SIZE_CHECKED	0	/* size checked, no lock held yet */
#define VMCOH_HOLD_FAULT_LOCKED		1	/* entry lock taken */
#define VMCOH_HOLD_FAULT_LOOKED_UP	2	/* block map read */
#define VMCOH_HOLD_FAULT_BEFORE_PTE	3	/* about to install the PTE */
#define VMCOH_HOLD_INVAL_MAP_CHANGED	4	/* block map changed */
#define VMCOH_HOLD_INVAL_ENTRIES_REMOVED 5	/* entries removed */
#define VMCOH_HOLD_INVAL_BEFORE_UNMAP	6	/* page tables not yet unmapped */
#define VMCOH_HOLD_INVAL_BEFORE_FREE	7	/* unmapped, blocks not yet freed */
#define VMCOH_NR_HOLD_POINTS		8

/* vmcoh_hold.ops, for invalidation points; 0 means any */
#define VMCOH_HOLD_OP_WRITE		_BITULL(0)
#define VMCOH_HOLD_OP_PUNCH		_BITULL(1)
#define VMCOH_HOLD_OP_SHRINK		_BITULL(2)

/* vmcoh_hold.timeout_ms: 0 means the default; more than the max is -EINVAL */
#define VMCOH_HOLD_TIMEOUT_DEFAULT_MS	10000
#define VMCOH_HOLD_TIMEOUT_MAX_MS	60000

struct vmcoh_hold {
	__u64 point;		/* VMCOH_HOLD_* */
	__u64 index;		/* page index (ARM only) */
	__u64 ops;		/* VMCOH_HOLD_OP_* (ARM, invalidation points) */
	__u64 timeout_ms;	/* ARM: longest park; WAIT: longest wait */
	__u64 flags;		/* must be 0 */
	__u64 reserved[3];	/* must be 0 */
};

#define VMCOH_IOC_MAGIC		0xC7

#define VMCOH_IOC_GET_INFO	_IOR(VMCOH_IOC_MAGIC, 0x00, struct vmcoh_info)
#define VMCOH_IOC_SET_SIZE	_IOW(VMCOH_IOC_MAGIC, 0x01, struct vmcoh_set_size)
#define VMCOH_IOC_PUNCH_HOLE	_IOW(VMCOH_IOC_MAGIC, 0x02, struct vmcoh_range)
#define VMCOH_IOC_GET_STATS	_IOR(VMCOH_IOC_MAGIC, 0x03, struct vmcoh_stats)

/*
 * ARM: -EBUSY if the point is armed or occupied already.  WAIT: returns once
 * a task is parked at the point, -ETIMEDOUT if none parked in time, -ENOENT
 * if the point is neither armed nor occupied, -EINTR on a signal.
 * RELEASE: lets the parked task go, or disarms; returns 1 if a task was
 * parked, else 0.
 */
#define VMCOH_IOC_HOLD_ARM	_IOW(VMCOH_IOC_MAGIC, 0x10, struct vmcoh_hold)
#define VMCOH_IOC_HOLD_WAIT	_IOW(VMCOH_IOC_MAGIC, 0x11, struct vmcoh_hold)
#define VMCOH_IOC_HOLD_RELEASE	_IOW(VMCOH_IOC_MAGIC, 0x12, struct vmcoh_hold)

#endif /* _UAPI_VMCOH_H */
