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
 *
 * Permissions.  Who may open /dev/vmcoh is the device node's mode (0600,
 * root's, unless udev or the administrator says otherwise).  A file opened
 * read-only may read, map shared read-only or privately, poll and ask
 * (GET_INFO, the statistics); every command that changes the object -
 * SET_SIZE, PUNCH_HOLE, ATTACH, INVALIDATE, DROP - fails with -EBADF on it,
 * as ftruncate(2) and fallocate(2) do, and the core refuses it a writable
 * shared mapping.  Serving the object (ATTACH) needs nothing more than a
 * file opened for writing: a writer can already replace every block any
 * mapper sees (write(2)) and make its accesses fault (SET_SIZE), which is
 * what a server can do with its answers.  A server adds only two things:
 * it sees which blocks are loaded, and it delays the faults that wait for
 * it, each by load_timeout_ms at most (then SIGBUS), a bound root sets,
 * and killably.  Unlike a FUSE server, which is why FUSE asks for
 * allow_other, it owns no names, owners or modes, and cannot stall a task
 * beyond what root allowed.
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
#define VMCOH_FEATURE_BACKING		_BITULL(5)	/* a server can back it */
#define VMCOH_FEATURE_WRITEBACK		_BITULL(6)	/* STORE, DROP, fsync */
#define VMCOH_FEATURE_WINDOW		_BITULL(7)	/* loaded with window_mb > 0 */
#define VMCOH_FEATURE_PMD		_BITULL(8)	/* 2 MiB mappings, see the window */
#define VMCOH_FEATURE_LOAD_RUNS		_BITULL(9)	/* VMCOH_ATTACH_REGIONS */
#define VMCOH_FEATURE_SERVE		_BITULL(10)	/* VMCOH_IOC_SERVE */
#define VMCOH_FEATURE_STORE_RUNS	_BITULL(11)	/* VMCOH_ATTACH_STORE_RUNS */

/*
 * vmcoh_info.unsafe: the deliberately broken protocol variant the module was
 * loaded with (module parameter unsafe=NAME, only with test_hooks=1), so a
 * test can prove the harness catches it.  Each reproduces one real bug.
 */
#define VMCOH_UNSAFE_NONE		0
#define VMCOH_UNSAFE_LOOKUP_BEFORE_LOCK	1	/* fault reads block map, then locks */
#define VMCOH_UNSAFE_UNMAP_BEFORE_REMOVE 2	/* invalidation unmaps, then removes
						 * entries (and skips step 3b)
						 */
#define VMCOH_UNSAFE_NO_SIZE_RECHECK	3	/* no size check under the entry lock */
#define VMCOH_UNSAFE_NO_EVEN_COWS	4	/* shrink leaves private copies mapped */
#define VMCOH_UNSAFE_FREE_BEFORE_UNMAP	5	/* blocks freed (and poisoned) before the unmap */
#define VMCOH_UNSAFE_WRITE_NO_INVALIDATE 6	/* write(2) filling a hole does not invalidate */
#define VMCOH_UNSAFE_LOAD_AFTER_INVALIDATE 7	/* a load invalidated in flight is installed */
#define VMCOH_UNSAFE_INVALIDATE_WAITS_LOAD 8	/* invalidation waits for loads in flight */
#define VMCOH_UNSAFE_DROP_UNDER_ENTRY_LOCK 9	/* a fault waits for a drop, entry locked */
#define VMCOH_UNSAFE_DROP_SKIPS_WRITEBACK 10	/* a drop invalidates dirty blocks unwritten */
#define VMCOH_UNSAFE_RECLAIM_IN_FAULT	11	/* a fault reclaims a range, entry locked */
#define VMCOH_UNSAFE_PMD_DOWNGRADE_NO_UNMAP 12	/* a 2 MiB entry goes, its PMDs stay */
#define VMCOH_UNSAFE_WAIT_HOLDING_MMAP_LOCK 13	/* a retried fault waits for the server
						 * holding mmap_lock
						 */
#define VMCOH_UNSAFE_ZERO_UNMAP_AFTER_PUBLISH 14	/* store: publish, then unmap */
#define VMCOH_UNSAFE_REUSE_PINNED	15	/* a window page backs its index again
						 * while a pin may write through it
						 */
#define VMCOH_UNSAFE_NO_STORE_WAIT	16	/* invalidation frees a block a store
						 * is still mapping
						 */
#define VMCOH_UNSAFE_WB_COPY_BEFORE_UNMAP 17	/* writeback copies a run before
						 * it write-protects it
						 */
#define VMCOH_NR_UNSAFE			18

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
	__u64 backing;		/* VMCOH_BACKING_* */
};

/* vmcoh_info.backing */
#define VMCOH_BACKING_NONE		0	/* blocks live here; holes read 0 */
#define VMCOH_BACKING_SERVED		1	/* a server is attached */
#define VMCOH_BACKING_ORPHANED		2	/* its server died: loads fail */

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
	__u64 entries_trimmed;		/* entries gone with the last mapping */
	__u64 map_pages_faults;		/* faults ->map_pages answered alone */
	__u64 vma_lock_faults;		/* ->fault calls under a VMA lock */
};

/*
 * Hold points (test hooks): a task that reaches an armed point for the armed
 * page index parks there until userspace releases it, so a test can drive
 * an exact interleaving.  They exist only when the module is loaded with
 * test_hooks=1; otherwise these ioctls fail with -EPERM.
 *
 * Fault points fire in ->fault for a fault at @index, and in a 2 MiB fault
 * at the first index of its region (all but SIZE_CHECKED and ALLOCATED).
 * In a window, FAULT_LOOKED_UP also fires in the fault-around that follows
 * ->fault, when @index is in its window: it has read the block map, counted,
 * and installs no PTE yet (->map_pages leaves such a window to it).  Only
 * with fault-around on: module parameter fault_around > 1.
 * FAULT_ALLOCATED fires in ->fault or ->page_mkwrite when a store has just
 * published a block in a hole, its entry locked: the zero page is already
 * unmapped everywhere (unsafe=zero_unmap_after_publish: not yet).
 * MKWRITE_LOCKED fires in ->page_mkwrite once it has locked the block's page
 * for the core and let go of the entry lock: the core makes the PTE
 * writable, or installs it (a store mapped in one trap), next.  Invalidation
 * points fire when write(2), punch or shrink invalidates a range covering
 * @index, with io_rwsem held; @ops narrows them to some operations.  In the safe
 * protocol they come in the order MAP_CHANGED, ENTRIES_REMOVED,
 * BEFORE_UNMAP, BEFORE_FREE; the unsafe variants reorder them with the steps
 * they reorder.  DROP_STARTED fires in a DROP (or a window reclaim, which is
 * one) covering @index once faults and I/O on the range wait for it, before
 * anything is written back; it holds no lock.  WRITEBACK_CLEARED fires in a
 * writeback (fsync, a DROP, a reclaim) whose STORE's run covers @index, once
 * the run's DIRTY marks are cleared and before the run is write-protected
 * and copied (unsafe=writeback_copy_before_unmap: copied already), holding
 * io_rwsem shared.
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
#define VMCOH_HOLD_DROP_STARTED		8	/* a drop began: nothing written back yet */
#define VMCOH_HOLD_FAULT_ALLOCATED	9	/* a store published a block in a hole */
#define VMCOH_HOLD_MKWRITE_LOCKED	10	/* block locked for the core, entry not */
#define VMCOH_HOLD_WRITEBACK_CLEARED	11	/* a STORE's run: marks cleared */
#define VMCOH_NR_HOLD_POINTS		12

/* vmcoh_hold.ops, for invalidation points; 0 means any */
#define VMCOH_HOLD_OP_WRITE		_BITULL(0)
#define VMCOH_HOLD_OP_PUNCH		_BITULL(1)
#define VMCOH_HOLD_OP_SHRINK		_BITULL(2)
#define VMCOH_HOLD_OP_SERVER		_BITULL(3)	/* INVALIDATE, DETACH */
#define VMCOH_HOLD_OP_DROP		_BITULL(4)	/* DROP */
#define VMCOH_HOLD_OP_RECLAIM		_BITULL(5)	/* the window's reclaim */
#define VMCOH_HOLD_OPS_ALL		(_BITULL(6) - 1)	/* any other bit: -EINVAL */

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

/*
 * Backing store: a userspace server serves the object's blocks, as a ZEO
 * server serves wendelin.core or a FUSE server a file.  The protocol:
 *
 *   ATTACH     on an open file of /dev/vmcoh makes that file the server's
 *              channel.  -EBUSY if a server is attached, or if the object
 *              is not backed yet and holds blocks (punch or shrink them
 *              first).  An orphaned object keeps its resident blocks.
 *              With VMCOH_ATTACH_WRITABLE the server takes STOREs and the
 *              object is writable; a read-only ATTACH of an object that
 *              holds dirty blocks is -EBUSY.
 *              With VMCOH_ATTACH_REGIONS the server takes LOADs of
 *              several blocks at once (see "Region loads" below); with
 *              VMCOH_ATTACH_STORE_RUNS, which needs WRITABLE (-EINVAL
 *              without), STOREs of several (see "Store runs").
 *   RECV       waits for a request and returns it; -EAGAIN at once with
 *              VMCOH_RECV_NONBLOCK (poll() the file for POLLIN instead),
 *              -EINTR on a signal.  A writable server passes in
 *              vmcoh_request.data a buffer of block_size bytes
 *              (VMCOH_RANGE_SIZE with VMCOH_ATTACH_STORE_RUNS), where a
 *              STORE's contents are copied (-EINVAL without one).
 *   REPLY      answers a request.  A LOAD: vmcoh_reply.data points at
 *              vmcoh_request.length bytes, the blocks' contents (block_size
 *              bytes but for a region load); or error is non-zero
 *              and the load fails (faults get SIGBUS, read(2) gets -EIO).
 *              A STORE: data and length are 0, and error says whether the
 *              server kept the contents; if not, the block stays dirty and
 *              the fsync or DROP that sent it fails with -EIO.  -ENOENT if
 *              the id is unknown: the request timed out or was answered.
 *              -EFAULT if a LOAD's data cannot be read: the request stays
 *              pending, to be answered again or to time out; the answer is
 *              read before the request is taken, so a read that blocks
 *              does not keep it from timing out.  With a window, a
 *              page-aligned answer is pinned and each block copied once,
 *              straight into its range; any other is copied twice.
 *   SERVE      answers several requests and receives several in one call,
 *              as FUSE-over-io_uring's COMMIT_AND_FETCH and ublk's
 *              COMMIT_AND_FETCH_REQ do (struct vmcoh_serve, below).
 *   INVALIDATE says the server's copy of a range changed: when it returns,
 *              no mapping, read(2) or later load shows the old contents.
 *              It never waits for a load in flight; such a load is
 *              discarded when it is answered, and loaded again.  Dirty
 *              blocks in the range are discarded too: the server's copy
 *              wins (a server that wants them must DROP instead).
 *   DROP       gives up the range, as a cluster node gives up its lock on
 *              it for another node: dirty blocks are written back (STOREs),
 *              then the range is invalidated - entries first, page tables
 *              second - and DROP returns, which is the acknowledgment.
 *              Meanwhile faults, read(2) and write(2) on the range wait,
 *              and once it returns they load the blocks again.  The server
 *              must answer the STOREs from another thread: DROP waits for
 *              them.  -EIO if a STORE failed: the range then keeps its
 *              blocks, dirty, and is not dropped.
 *   DETACH     ends serving: in-flight requests fail, every resident block
 *              is dropped, and the object reads as holes again - unless a
 *              block is dirty: then the object keeps its blocks, ORPHANED,
 *              as if the server had died (fsync or DROP first to avoid it).
 *
 * Dirty tracking: a store through a shared mapping (write notification,
 * ->page_mkwrite) and write(2) mark the block dirty; write(2) loads a block
 * that is not resident first.  fsync(2) on any file of the device writes
 * the dirty blocks of its range back with STOREs, write-protects them
 * again, and fails with -EIO if any STORE failed or no server is attached.
 * Nothing written is lost unless the server INVALIDATEs it or the object
 * shrinks over it: a dead server orphans the object with its dirty blocks,
 * and a new writable server receives them at the next fsync.
 *
 * The process that ATTACHed is the server.  When it no longer holds a
 * descriptor of the server's file without having DETACHed - it closed it,
 * or exited: the server died - the object is orphaned, even if a process
 * it forked still holds the file: requests in flight fail, later loads
 * fail at once, resident blocks stay, and a new server may ATTACH.  A
 * request not answered within the module parameter load_timeout_ms fails
 * the same way.
 *
 * Without a writable server a backed object is read-only: write(2) fails
 * with -EROFS, a shared writable mmap() with -EACCES, a store through a
 * shared mapping made before raises SIGBUS.  PUNCH_HOLE fails with
 * -EOPNOTSUPP on any backed object.  Private mappings copy on write as
 * usual.  SEEK_DATA/SEEK_HOLE see no holes in it.
 *
 * Only the server's file may RECV, REPLY, INVALIDATE, DROP and DETACH
 * (-EPERM otherwise).  A fault or read(2) on a block that is not resident
 * sends one LOAD however many tasks want it, and holds no lock of vmcoh
 * while the server works: the server may fault, read and invalidate
 * freely, but must not wait for its own requests (fsync, or an access to
 * a range it is dropping).  A thread that receives requests must leave it
 * to another to wait for one: a fault or read(2) of a block that is not
 * resident needs a LOAD, and with a window a free range may need a
 * reclaim's STOREs.  While one task alone has ever RECVed for the server,
 * such a wait of that task fails at once - -EDEADLK for read(2) and
 * write(2), SIGBUS for a fault - instead of after load_timeout_ms, or
 * never with 0.  Its wait for a pin (see "Pins in a window") fails so
 * after 200 ms, since the reference may be a STORE in flight.
 *
 * Region loads.  A server that ATTACHes with VMCOH_ATTACH_REGIONS may be
 * sent a LOAD of a run of blocks: vmcoh_request.length is then a multiple
 * of block_size, at most VMCOH_RANGE_SIZE, and the run never crosses an
 * aligned VMCOH_RANGE_SIZE region of the object.  Its REPLY carries the
 * whole run (length equal to the request's) or an error for all of it.
 * How much a miss loads follows the access pattern, as the page cache's
 * readahead does: a fault or read(2) that misses loads the aligned
 * VMCOH_LOAD_RUN_MIN blocks around the block it needs (read-around); a
 * miss at the block right after the previous load's run loads twice that
 * run, and a miss right after at least VMCOH_LOAD_RUN_MIN resident blocks
 * in a row twice their number (a pass that found them resident), up to
 * the rest of the region - so a sequential pass costs about one round
 * trip per region once it is under way.  With a window, such a pass also
 * reads ahead: the miss that loads the rest of a region sends the LOAD of
 * the next region too, and when the pass reaches that region, the one
 * after it is sent (loads_ahead counts these), so the server answers one
 * region while the reader goes through the one before.  Each block of the run is
 * loading on its own: a task that wants any of them waits for the one
 * request, an invalidation of part of the run discards the answer for that
 * part only, and blocks already resident are left out of the run.
 *
 * Store runs.  A server that ATTACHes with VMCOH_ATTACH_STORE_RUNS is sent
 * a STORE for each run of dirty blocks in a row, up to VMCOH_RANGE_SIZE,
 * that never crosses an aligned VMCOH_RANGE_SIZE region: a region written
 * whole goes back in one round trip.  vmcoh_request.length says how long
 * the run is, and each request slot's buffer must hold VMCOH_RANGE_SIZE
 * bytes.  The REPLY (no data) keeps or fails the whole run; a run that
 * failed stays dirty, all of it.
 */
#define VMCOH_LOAD_RUN_MIN		16	/* blocks: 64 KiB with 4 KiB pages */

#define VMCOH_REQ_LOAD			1	/* send the block at offset */
#define VMCOH_REQ_STORE			2	/* keep these contents of it */

#define VMCOH_ATTACH_WRITABLE		_BITULL(0)	/* take STOREs */
#define VMCOH_ATTACH_REGIONS		_BITULL(1)	/* take LOADs of runs */
#define VMCOH_ATTACH_STORE_RUNS		_BITULL(2)	/* take STOREs of runs */

#define VMCOH_RECV_NONBLOCK		_BITULL(0)

struct vmcoh_attach {
	__u64 flags;		/* ATTACH: VMCOH_ATTACH_*; DETACH: 0 */
	__u64 reserved[3];	/* must be 0 */
};

struct vmcoh_request {
	__u64 flags;		/* in: VMCOH_RECV_* */
	__u64 id;		/* out: quote it in vmcoh_reply.id */
	__u64 op;		/* out: VMCOH_REQ_* */
	__u64 offset;		/* out: byte offset of the block */
	__u64 length;		/* out: block_size; a run may be more */
	__u64 data;		/* in: STORE buffer of block_size bytes, or
				 * VMCOH_RANGE_SIZE (store runs)
				 */
	__u64 reserved[2];	/* in: must be 0; out: 0 */
};

struct vmcoh_reply {
	__u64 id;		/* from vmcoh_request.id */
	__s64 error;		/* 0, or a negative errno: the request fails */
	__u64 data;		/* LOAD: user pointer to length bytes */
	__u64 length;		/* LOAD: the request's length (error == 0),
				 * else 0
				 */
	__u64 flags;		/* must be 0 */
	__s64 result;		/* REPLY: must be 0; SERVE: out, what REPLY
				 * would have returned: 0 or a negative errno
				 */
	__u64 reserved[2];	/* must be 0 */
};

/*
 * SERVE: a batch of replies, then a batch of requests, in one call.  The
 * replies are taken first, in order, each as REPLY would take it; one that
 * REPLY would refuse (a stale id: -ENOENT; a bad answer: -EINVAL; an answer
 * it cannot read: -EFAULT, the request still pending) does not stop the
 * batch: its result field says so.  Then up to nr_requests requests are
 * received into the array at requests, each slot as RECV fills it (a
 * writable server gives each slot a data buffer for a STORE; the slots'
 * flags must be 0).  SERVE waits for the first request unless
 * VMCOH_RECV_NONBLOCK is set, and takes the others that are queued without
 * waiting.  Returns the number of requests received, which may be 0 with
 * VMCOH_RECV_NONBLOCK or with nr_requests == 0; -EINTR on a signal while
 * waiting (the replies were taken: replied says how many), -EFAULT if an
 * array cannot be read or written, -EINVAL for a bad batch, -EPERM if the
 * file is not the server's.  A request received but not delivered (its
 * slot could not be written) goes back to the head of the queue.
 * VMCOH_SERVE_MAX bounds both counts.
 */
#define VMCOH_SERVE_MAX			64

struct vmcoh_serve {
	__u64 flags;		/* in: VMCOH_RECV_* */
	__u64 replies;		/* in: user pointer to nr_replies vmcoh_reply */
	__u64 requests;		/* in: user pointer to nr_requests
				 * vmcoh_request
				 */
	__u32 nr_replies;	/* in */
	__u32 nr_requests;	/* in: room in the array */
	__u32 replied;		/* out: replies taken (their result set) */
	__u32 received;		/* out: the return value, if not an error */
	__u64 reserved[2];	/* must be 0 */
};

/* Counters of the backing store since the module was loaded. */
struct vmcoh_backing_stats {
	__u64 loads;			/* LOAD requests sent */
	/* The next three count blocks: a LOAD of a run ends for each. */
	__u64 loads_published;		/* loads whose block became resident */
	__u64 loads_invalidated;	/* answered after an invalidation: dropped */
	__u64 loads_failed;		/* error replies, timeouts, server gone */
	__u64 load_waits;		/* waits for a load in flight */
	__u64 load_timeouts;		/* requests failed by load_timeout_ms */
	__u64 server_invalidations;	/* INVALIDATE calls */
	__u64 attaches;
	__u64 blocks_dirtied;		/* clean blocks made dirty */
	__u64 stores;			/* STORE requests sent */
	__u64 stores_failed;		/* error replies, timeouts, server gone */
	__u64 drops;			/* DROP calls */
	__u64 drop_waits;		/* faults and I/O that waited for a DROP */
	__u64 blocks_dirty;		/* dirty blocks now */
	__u64 load_blocks;		/* blocks the LOADs sent asked for */
	__u64 loads_ahead;		/* LOADs sent ahead of a sequential
					 * reader (of those in loads)
					 */
};

/*
 * The window (module parameter window_mb > 0, VMCOH_FEATURE_WINDOW): resident
 * blocks live in 2 MiB ranges (VMCOH_RANGE_SIZE) from a fixed pool, one
 * aligned 2 MiB region of the object per range; block i of a region is page
 * i of its range.  When the pool is empty, a backed object's ranges are
 * reclaimed - written back, invalidated, returned to the pool - by a
 * background worker (which keeps a reserve), the shrinker (which asks the
 * worker), read(2)/write(2) inline, or a fault once it has let go of its
 * locks (one that cannot let go of mmap_lock waits for the worker).  An
 * object without a server, never served or orphaned, cannot give ranges
 * back - an orphaned one keeps its resident blocks, which nobody could load
 * again, under memory pressure too: once the pool is empty its writes fail
 * with -ENOSPC and its write faults with SIGBUS, as at the max_mb cap.  A
 * range whose memory the shrinker gave back gets memory again when a region
 * takes it; if none can be had even with reclaim and compaction, the access
 * fails: -ENOMEM for read(2) and write(2), SIGBUS for a fault.
 *
 * Which range a reclaim takes: not simply the least recently used, which
 * in a loop over more than the window evicts just what the loop needs
 * next.  A region that takes a range again after a reclaim took its last
 * one (refaults counts them) gets an active range while fewer than half
 * are active; reclaims take inactive ranges first, least recently used
 * first, and an active range stays active while faults map it or read(2)
 * reads it (kmod/window.c, "Which range goes").
 *
 * Sparse regions.  For a server that takes runs, a region that comes back
 * after a reclaim through a scattered miss (read-around, not a sequential
 * pass) gets pages of its own rather than a range: its blocks are single
 * pages, allocated as they are loaded and freed with them, never mapped by
 * a PMD.  The window's bound is then window_mb of pages: a range with
 * memory counts 2 MiB, a sparse block 4 KiB (sparse_regions, sparse_blocks,
 * sparse_taken; kmod/window.c, "Sparse regions").
 *
 * Pins in a window.  Since block i is always page i of its range, a page
 * that GUP holds (O_DIRECT, process_vm_writev(), vmsplice) when its block
 * is punched, truncated, invalidated or reclaimed does not back the index
 * again until the reference goes: the write(2), store or load that would
 * put the index's next block there waits for it (killable; pin_waits counts
 * the waits), as truncation of a DAX file waits for pinned pages.  So a
 * store through such a pin never lands on data written after the punch.
 * Without a window the punched block's page simply goes with the pin.
 * Long-term pins (io_uring fixed buffers) of a mapping are refused by the
 * kernel, by io_uring on 6.1 and by GUP on 6.12.
 *
 * 2 MiB mappings (VMCOH_FEATURE_PMD: a window, module parameter pmd=1, and
 * a kernel with FS_DAX and THP): a shared mapping of a fully
 * resident aligned region, whose 2 MiB of addresses it covers, aligned,
 * is mapped by one PMD.  A mapping of a single page of the region - a
 * private or unaligned mapping, one that covers only part of it -
 * downgrades it: every PMD of the region is unmapped, and its pages are
 * mapped by PTEs from then on, until an invalidation of the region.  An
 * invalidation of any part of a region unmaps its PMDs.  mmap(2) of 2 MiB
 * or more picks a 2 MiB-aligned address, as for a DAX file.  For a server
 * that takes runs, a 2 MiB fault on a region with no block resident loads
 * the region whole (or waits for the load of it sent ahead), then maps it
 * by one PMD.
 */
#define VMCOH_RANGE_SIZE		(2ULL << 20)

struct vmcoh_window_stats {
	__u64 ranges;			/* in the pool: window_mb / 2 */
	__u64 ranges_free;		/* now */
	__u64 ranges_busy;		/* owned by a region now */
	__u64 reserve;			/* free ranges the worker keeps */
	__u64 reclaims_inline;		/* by read(2) and write(2) */
	__u64 reclaims_background;	/* by the worker, for its reserve */
	__u64 reclaims_shrinker;	/* by the worker, for the shrinker */
	__u64 reclaims_failed;		/* victims kept: pinned, or a STORE failed */
	__u64 range_waits;		/* faults that waited for a free range */
	__u64 range_wait_timeouts;	/* ... and gave up (SIGBUS) */
	__u64 ranges_populated;		/* with memory: busy, or free and kept */
	__u64 pmd_maps;			/* regions mapped by one PMD */
	__u64 pmd_fallbacks;		/* 2 MiB faults left to PTEs */
	__u64 pmd_downgrades;		/* 2 MiB entries unmapped for a PTE */
	__u64 pin_waits;		/* waits for a pin of a freed block */
	__u64 refaults;			/* regions given a range again after
					 * a reclaim took theirs
					 */
	__u64 reclaims_fault;		/* by faults that let go of their
					 * locks to reclaim
					 */
	__u64 sparse_regions;		/* regions in pages of their own now */
	__u64 sparse_blocks;		/* ... their blocks, now */
	__u64 sparse_taken;		/* regions that came back through a
					 * scattered miss and got pages of
					 * their own, ever
					 */
};

/*
 * struct vmcoh_window_stats only grows, at its end.  GET_WINDOW_STATS
 * takes the size in its command: a caller built against an older header
 * gets the fields it knows.  The first size the module accepts:
 */
#define VMCOH_WINDOW_STATS_SIZE_V1	(16 * sizeof(__u64))

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

#define VMCOH_IOC_ATTACH	_IOW(VMCOH_IOC_MAGIC, 0x20, struct vmcoh_attach)
#define VMCOH_IOC_DETACH	_IOW(VMCOH_IOC_MAGIC, 0x21, struct vmcoh_attach)
#define VMCOH_IOC_RECV		_IOWR(VMCOH_IOC_MAGIC, 0x22, struct vmcoh_request)
#define VMCOH_IOC_REPLY		_IOW(VMCOH_IOC_MAGIC, 0x23, struct vmcoh_reply)
#define VMCOH_IOC_INVALIDATE	_IOW(VMCOH_IOC_MAGIC, 0x24, struct vmcoh_range)
#define VMCOH_IOC_GET_BACKING_STATS \
	_IOR(VMCOH_IOC_MAGIC, 0x25, struct vmcoh_backing_stats)
#define VMCOH_IOC_DROP		_IOW(VMCOH_IOC_MAGIC, 0x26, struct vmcoh_range)
#define VMCOH_IOC_SERVE		_IOWR(VMCOH_IOC_MAGIC, 0x28, struct vmcoh_serve)

/* -ENODEV if the module was loaded without a window (window_mb=0). */
#define VMCOH_IOC_GET_WINDOW_STATS \
	_IOR(VMCOH_IOC_MAGIC, 0x27, struct vmcoh_window_stats)

#endif /* _UAPI_VMCOH_H */
