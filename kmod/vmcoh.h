/* SPDX-License-Identifier: GPL-2.0 */
/*
 * vmcoh: one sparse object behind /dev/vmcoh, mapped by page faults that
 * stay coherent with write(2), hole punching and truncation.
 *
 * Three layers, each in its own file, mirror a DAX filesystem:
 *
 *   blockmap.c   the "filesystem": which block (a page we own) backs each
 *                index of the object, and the object's size.
 *   entry.c      the "radix tree": one xarray value entry per index that
 *                page tables may map, carrying a sleeping LOCKED bit.
 *   fault.c      the fault path: it takes an index's entry lock before it
 *                reads the block map and installs the PTE under that lock;
 *                a plain object's block is mapped under its page lock
 *                instead, as the page cache maps a folio; in a window, a
 *                fully resident 2 MiB region is mapped by one PMD under one
 *                entry lock covering the region.
 *   invalidate.c every change that removes or replaces a block mapping:
 *                block map first, entries second, page tables third, and
 *                only then are blocks freed.
 *   backing.c    backed objects: a block that is not resident is loaded
 *                from a userspace server, the load being a state of the
 *                index's entry (LOADING), not a lock anybody holds.
 *   writeback.c  dirty blocks of a backed object: fsync's STOREs, and the
 *                server's DROP of a range (a cluster lock given up).
 *   server.c     the server's channel: requests, replies, its death.
 *   window.c     window_mb: blocks live in a bounded pool of 2 MiB ranges,
 *                reclaimed from backed objects (a DROP of the region).
 *   trace.c      the trace events of trace.h (docs/tracing.md).
 *
 * Layers.  The block map and the entries are the bottom: they call no
 * other file of the module (but the test hooks and the trace events of
 * trace.c, which call nothing), as fs/dax.c's entries call no filesystem.
 * What they need from above is passed down as ops tables - struct
 * vmcoh_block_ops, through which the window places blocks in its ranges,
 * and struct vmcoh_entry_load_ops, through which entries hold the loads
 * they point at - and
 * tests/test_layers.py checks the object files.  Above them invalidate.c,
 * then fault.c and io.c, with backing.c, server.c, writeback.c and
 * window.c beside them.
 *
 * Information flows block map -> entry -> page tables, so it is invalidated
 * in the same order (Jan Kara, linux-mm 2017-04): once the entries of a range
 * are gone, no fault that read the old block map can still be installing a
 * PTE, and one ranged unmap removes every PTE that was built from it.
 *
 * Lock order (outermost first), for every file of the module:
 *
 *   backing.drop_mutex            (DROP: one at a time)
 *   backing.wb_mutex              (fsync, DROP: one writeback at a time)
 *   vmcoh_dev.io_rwsem            (write(2), punch, resize, the server's
 *                                  INVALIDATE: exclusive; read(2): shared)
 *     mmap_lock / per-VMA lock    (taken by the fault core, or by
 *                                  copy_{from,to}_user under io_rwsem)
 *       entry lock                (sleeping; one index, or one 2 MiB
 *                                  region, at a time)
 *         i_mmap_rwsem            (unmap_mapping_pages/range)
 *           page table lock
 *           entries.xa_lock       (vmcoh_entries_trim(), from ->close)
 *         page lock               (page_mkwrite returns it held, and
 *                                  ->fault hands a store's block to the
 *                                  core with it held)
 *     page lock                   (a plain object's block, mapped under
 *       page table lock            it without an entry lock: fault.c)
 *     page lock                   (invalidation waits for each block's
 *                                  page lock after its unmap: step 3b)
 *     counted fault-around        (invalidation waits for those of the
 *                                  generation before it: step 3b; they
 *                                  take the page table lock and wait for
 *                                  nothing, see vmcoh_around_begin())
 *       entries.xa_lock           (spinlock, never held across sleeps)
 *       blocks.xa_lock            (spinlock, never held across sleeps)
 *       backing.inflight.xa_lock  (spinlock: the server channel)
 *       window.regions.xa_lock    (spinlock: the pool of ranges)
 *
 * No path holds an entry lock while it takes io_rwsem, faults on user
 * memory, or waits for another entry: a fault takes io_rwsem only to
 * reclaim a range of the window, after it let go of its entry lock and of
 * mmap_lock or the VMA lock (window.c), and invalidation waits for entries
 * without holding one.
 *
 * A DROP in progress is the coherence lock of its range being given up
 * (the OCFS2 cluster lock of the 2005 seed).  It waits for entry locks and
 * io_rwsem, so nobody waits for it while holding either: a fault, write(2)
 * or read(2) that finds its index being dropped lets go of its entry lock
 * or io_rwsem first, waits, and starts over (writeback.c).
 *
 * Waiting for the server (a load in flight) is outside all of it: a task
 * waits for a load holding no lock of vmcoh's - the fault path gives up its
 * entry lock for the LOADING state, read(2) drops io_rwsem, and user copies
 * under io_rwsem run with page faults disabled - so the server may fault,
 * read and invalidate while loads are pending (wendelin.core's loadblk()
 * with the virtmem lock released).  The fault core may still hold mmap_lock
 * if it does not allow a retry.
 */
#ifndef VMCOH_H
#define VMCOH_H

#include <linux/completion.h>
#include <linux/fs.h>
#include <linux/kref.h>
#include <linux/mm_types.h>
#include <linux/mutex.h>
#include <linux/percpu.h>
#include <linux/rwsem.h>
#include <linux/sched.h>
#include <linux/types.h>
#include <linux/wait.h>
#include <linux/xarray.h>

#include "../uapi/vmcoh.h"

struct vmcoh_dev;
struct vmcoh_req;

/* Event counters, reported by VMCOH_IOC_GET_STATS. */
enum vmcoh_counter {
	VMCOH_FAULTS,
	VMCOH_MKWRITE_FAULTS,
	VMCOH_ZERO_PAGE_MAPS,
	VMCOH_ZERO_PAGE_UPGRADES,
	VMCOH_SIGBUS,
	VMCOH_ENTRY_LOCK_WAITS,
	VMCOH_INVALIDATIONS,
	VMCOH_RANGED_UNMAPS,
	VMCOH_ENTRIES_REMOVED,
	VMCOH_BLOCKS_ALLOCATED,
	VMCOH_BLOCKS_FREED,
	VMCOH_HOLDS_PARKED,
	VMCOH_HOLD_TIMEOUTS,
	VMCOH_FAULT_AROUND_MAPS,
	VMCOH_ENTRIES_TRIMMED,
	VMCOH_MAP_PAGES_FAULTS,
	VMCOH_VMA_LOCK_FAULTS,
	VMCOH_LOADS,
	VMCOH_LOAD_BLOCKS,
	VMCOH_LOADS_AHEAD,
	VMCOH_LOADS_PUBLISHED,
	VMCOH_LOADS_INVALIDATED,
	VMCOH_LOADS_FAILED,
	VMCOH_LOAD_WAITS,
	VMCOH_LOAD_TIMEOUTS,
	VMCOH_SERVER_INVALIDATIONS,
	VMCOH_ATTACHES,
	VMCOH_BLOCKS_DIRTIED,
	VMCOH_STORES,
	VMCOH_STORES_FAILED,
	VMCOH_DROPS,
	VMCOH_DROP_WAITS,
	VMCOH_RECLAIMS_INLINE,
	VMCOH_RECLAIMS_BACKGROUND,
	VMCOH_RECLAIMS_SHRINKER,
	VMCOH_RECLAIMS_FAULT,
	VMCOH_RECLAIMS_FAILED,
	VMCOH_RANGE_WAITS,
	VMCOH_RANGE_WAIT_TIMEOUTS,
	VMCOH_PIN_WAITS,
	VMCOH_PMD_MAPS,
	VMCOH_PMD_FALLBACKS,
	VMCOH_PMD_DOWNGRADES,
	VMCOH_WINDOW_REFAULTS,
	VMCOH_WINDOW_SPARSE_TAKEN,
	VMCOH_NR_COUNTERS
};

/* Per-CPU so the fault path never bounces a shared cache line. */
struct vmcoh_counters {
	u64 events[VMCOH_NR_COUNTERS];
};

struct vmcoh_block_list;

/*
 * Where the blocks of a map live when not in pages of their own: the
 * window's ranges, whose ops window.c passes down.  The block map calls
 * these, and nothing else above it.
 */
struct vmcoh_block_ops {
	/* vmcoh_block_publish(): @src's contents, or zeros, at @index. */
	struct page *(*publish)(struct vmcoh_dev *dev, pgoff_t index,
				struct page *src, bool *ours);
	/* vmcoh_blocks_publish(): a batch of one region's blocks. */
	unsigned long (*publish_batch)(struct vmcoh_dev *dev, pgoff_t first,
				       unsigned long want,
				       struct page *const *srcs);
	/*
	 * @index's block left the map for @list; under blocks.xa_lock.
	 * Return true if @block is a page of its own, which the block map
	 * then puts on @list itself, to be freed as a block without a window.
	 */
	bool (*removed)(struct vmcoh_dev *dev, pgoff_t index,
			struct page *block, struct vmcoh_block_list *list);
	/* Free what removed() put on @list. */
	void (*free)(struct vmcoh_dev *dev, struct vmcoh_block_list *list);
};

struct vmcoh_blockmap {
	struct xarray blocks;		/* index -> struct page * */
	const struct vmcoh_block_ops *ops;	/* NULL: pages of their own */
	/*
	 * Bytes; changed under blocks.xa_lock (and io_rwsem), read locklessly.
	 * An allocation checks it under blocks.xa_lock, so a shrink that has
	 * updated it can never miss a block published beyond the new EOF.
	 */
	loff_t size;
	atomic_long_t nr_blocks;	/* live blocks, <= max_blocks */
	atomic_long_t nr_dirty;		/* blocks marked VMCOH_BLOCK_DIRTY */
	unsigned long max_blocks;
};

/*
 * What the entry layer does with the loads its entries may point at: it
 * holds references to them, and (unsafe=invalidate_waits_load) waits for
 * one, without knowing what a load is.  backing.c passes its own down.
 */
struct vmcoh_entry_load_ops {
	void (*get)(struct vmcoh_req *load);
	void (*put)(struct vmcoh_req *load);
	/* Wait for @load to end, killably: 0, or -EINTR. */
	int (*wait)(struct vmcoh_req *load);
};

struct vmcoh_entries {
	struct xarray xa;		/* index -> value entry, see entry.c */
	wait_queue_head_t *wait_table;	/* hashed by index, see entry.c */
	const struct vmcoh_entry_load_ops *load_ops;
};

/*
 * The server channel of a backed object, see server.c.  inflight.xa_lock
 * protects all of it, and the drop in progress (writeback.c); state,
 * server, writable and dropping are also read locklessly.
 */
struct vmcoh_backing {
	struct xarray inflight;		/* request id -> request, till answered */
	unsigned int state;		/* VMCOH_BACKING_* */
	bool writable;			/* the server takes STOREs */
	bool regions;			/* ... and LOADs of runs of blocks */
	bool store_runs;		/* ... and STOREs of runs */
	struct file *server;		/* the attached server's file */
	fl_owner_t server_files;	/* the descriptor table that ATTACHed */
	struct pid *receiver;		/* the one task that RECVs, if one */
	bool receivers;			/* more than one task has RECVed */
	struct list_head queue;		/* requests not yet received */
	u32 next_id;
	wait_queue_head_t recv_wait;	/* the server, for RECV and poll */
	struct mutex wb_mutex;		/* one writeback at a time */
	struct mutex drop_mutex;	/* one DROP at a time */
	bool dropping;			/* a DROP of [drop_first, drop_last] */
	pgoff_t drop_first, drop_last;
	wait_queue_head_t drop_wait;	/* tasks waiting for the DROP to end */
	/*
	 * Readahead of a server that takes runs (backing.c): the index after
	 * the last run sent, and its length; the index whose fault or read
	 * sends the next region ahead (ULONG_MAX: none).  Read and written
	 * locklessly: a torn guess costs a shorter or a longer run, or a
	 * region read ahead or not, nothing else.
	 */
	pgoff_t ra_next;
	unsigned int ra_blocks;
	pgoff_t ra_async;
};

/* The longest run of blocks one LOAD asks for: a region. */
#define VMCOH_LOAD_RUN_MAX	(VMCOH_RANGE_SIZE >> PAGE_SHIFT)

/*
 * A request to the server.  A LOAD of @nr blocks from @index: the entry of
 * each index of the run points at it (LOADING) until the load ends or an
 * invalidation removes that entry (LOADING_INVALIDATED).  A STORE: @data is
 * a copy of a dirty block, taken under its entry lock, for the server to
 * keep.  One reference belongs to the channel till the request is
 * answered, one to each task waiting.
 */
struct vmcoh_req {
	struct kref ref;
	struct vmcoh_dev *dev;
	pgoff_t index;
	unsigned int nr;		/* blocks: 1 but for a LOAD's run */
	u32 op;				/* VMCOH_REQ_LOAD or VMCOH_REQ_STORE */
	u32 id;				/* in backing.inflight while pending */
	int status;			/* when done: 0 or -EIO */
	/* A LOAD, when done: the blocks of the run that failed, wanted. */
	DECLARE_BITMAP(failed, VMCOH_LOAD_RUN_MAX);
	/*
	 * A STORE: copies[i] is the contents of block i of the run, freed
	 * with the request; blocks[i] the block copied, referenced until the
	 * STORE ends.  One block's pair is one_copy and one_block.
	 */
	struct page **copies;
	struct page **blocks;
	struct page *one_copy, *one_block;
	struct list_head queued;	/* on backing.queue till received */
	struct completion done;
};

/* A range of the window: VMCOH_RANGE_SIZE (uapi), one compound page. */
#define VMCOH_RANGE_ORDER	(21 - PAGE_SHIFT)
#define VMCOH_RANGE_PAGES	BIT(VMCOH_RANGE_ORDER)

/* A 2 MiB range of the window, see window.c. */
struct vmcoh_window_range {
	/* The compound page; NULL: given back, or sparse. */
	struct page *head;
	/*
	 * Sparse: the region's blocks are pages of their own, charged to the
	 * window one by one (see "Sparse regions" in window.c).  Such a range
	 * is a descriptor on window.sparse_free or window.busy, not one of
	 * window.ranges.
	 */
	bool sparse;
	pgoff_t region;			/* owner (its first index >> order) */
	unsigned int nr_blocks;		/* published blocks of the region */
	/*
	 * Blocks of the range in the block map, never more than there are:
	 * counted in after their store, out as they leave (blocks.xa_lock).
	 */
	atomic_t nr_present;
	bool reclaiming;
	bool active;			/* protected from reclaim, see window.c */
	bool referenced;		/* mapped or read since last looked at */
	struct list_head lru;		/* window.free, or window.busy */
	/*
	 * Blocks out of the map, not yet freed: set under blocks.xa_lock,
	 * cleared under the window's lock, both with io_rwsem exclusive.
	 */
	DECLARE_BITMAP(freeing, VMCOH_RANGE_PAGES);
	/* Freed while the range was pinned (window's lock), see window.c. */
	DECLARE_BITMAP(pinned, VMCOH_RANGE_PAGES);
	struct vmcoh_window_range *freeing_next;	/* on a vmcoh_block_list */
};

/* The pool; regions.xa_lock protects the rest, see window.c. */
struct vmcoh_window {
	unsigned int nr_ranges;		/* 0: no window */
	struct vmcoh_window_range *ranges;
	struct xarray regions;		/* region -> its range */
	struct list_head free;		/* ranges without a region */
	struct list_head busy;		/* owned ranges, least recent first */
	struct list_head sparse_free;	/* sparse descriptors without a region */
	unsigned int nr_sparse_descs;	/* allocated, owned or free */
	unsigned int nr_sparse;		/* owned sparse ranges */
	unsigned long nr_sparse_pages;	/* their blocks' pages */
	/*
	 * The budget, in pages: nr_ranges ranges' worth.  Used: ranges with
	 * memory (free or owned), and the pages of sparse ranges.
	 */
	unsigned long nr_pages;
	unsigned long pages_used;
	unsigned int nr_free;		/* also read locklessly */
	unsigned int nr_populated_free;	/* free ones with memory */
	unsigned long shrink_target;	/* ranges the shrinker asked for */
	bool ahead_wants;		/* readahead found no free range */
	unsigned long released;		/* ranges given back to the pool, ever */
	unsigned int nr_active;		/* busy ranges marked active */
	unsigned long nr_shadows;	/* reclaimed regions remembered */
	unsigned int picks;		/* reclaim victims picked, ever */
	atomic_t waiters;		/* faults waiting for a free range */
	wait_queue_head_t free_wait;	/* faults waiting for a free range */
	struct work_struct work;	/* the reclaim worker */
	struct shrinker *shrinker;
};

#define VMCOH_WINDOW_MAX_MB	65536

/*
 * Fault-around in a window maps present blocks under no lock of ours, each
 * counted in the generation it began in; an invalidation that freed blocks
 * starts a new generation and waits for the old one (invalidate.c).
 */
struct vmcoh_around {
	unsigned long gen;		/* io_rwsem exclusive; read locklessly */
	atomic_t count[2];		/* fault-arounds in flight, by gen & 1 */
};

struct vmcoh_dev {
	struct vmcoh_blockmap map;
	struct vmcoh_entries entries;
	struct rw_semaphore io_rwsem;
	struct address_space *mapping;	/* shared by every open, see device.c */
	struct page *zero_page;		/* what holes map; never written */
	unsigned int fault_around;	/* pages a read fault maps, see fault.c */
	bool pmd;			/* 2 MiB mappings, see fault.c */
	/*
	 * How long a load or store may wait for the server, in ms (0:
	 * forever); -1, the module parameter load_timeout_ms.  KUnit's
	 * private devices set their own and leave the parameter alone.
	 */
	int load_timeout_ms;
	struct vmcoh_backing backing;
	struct vmcoh_window window;
	struct vmcoh_around around;
	struct vmcoh_counters __percpu *counters;
};

/* Fault-around keeps a block and the flags of each page on the stack. */
#define VMCOH_FAULT_AROUND_MAX	32

static inline void vmcoh_count_add(struct vmcoh_dev *dev,
				   enum vmcoh_counter counter, u64 n)
{
	this_cpu_add(dev->counters->events[counter], n);
}

static inline void vmcoh_count(struct vmcoh_dev *dev,
			       enum vmcoh_counter counter)
{
	vmcoh_count_add(dev, counter, 1);
}

/*
 * Blocks on their way to being freed are chained through page->private,
 * which nothing else uses for a page that is neither in a page cache nor
 * anonymous.  The chain costs no allocation, so invalidation cannot fail.
 */
struct vmcoh_block_list {
	struct page *head;
	unsigned long count;
	struct vmcoh_window_range *ranges;	/* window blocks: window.c */
};

/*
 * Walks that take entries out of an xarray (xas_store(NULL) inside
 * xas_for_each()) drop xa_lock every VMCOH_WALK_BATCH entries, and sooner
 * if the scheduler asks, so a shrink of a large object neither holds the
 * spinlock for long nor runs without rescheduling.
 */
#define VMCOH_WALK_BATCH	64

/**
 * vmcoh_xas_relax - drop and retake xa_lock in the middle of a walk
 * @xas: the walk, positioned at the entry it has just handled
 *
 * The walk resumes at the next index.  Not by xas_pause(): once an
 * xas_store(NULL) has emptied a node, xas points at the parent with the
 * index of the removed entry, not aligned to the parent's span, and the
 * xas_pause() of Linux 6.1 adds a whole span to that index - skipping up to
 * 63 entries of the next node (fixed upstream in 2024 by "Xarray: move
 * forward index correctly in xas_pause()").  A shrink that skipped blocks
 * left them in the map beyond EOF, to reappear when the object grew.
 * Indices stay far below ULONG_MAX (VMCOH_MAX_OBJECT_SIZE), so the next
 * one cannot wrap.
 */
static inline void vmcoh_xas_relax(struct xa_state *xas)
	__must_hold(xas->xa->xa_lock)
{
	unsigned long next = xas->xa_index + 1;

	xas_unlock(xas);
	cond_resched();
	xas_lock(xas);
	xas_set(xas, next);
}

/* Which operation an invalidation serves (its bit in vmcoh_hold.ops). */
enum vmcoh_op {
	VMCOH_OP_WRITE,
	VMCOH_OP_PUNCH,
	VMCOH_OP_SHRINK,
	VMCOH_OP_SERVER,	/* the server's INVALIDATE, or DETACH */
	VMCOH_OP_DROP,		/* the server's DROP */
	VMCOH_OP_RECLAIM,	/* the window's reclaim of a range */
};

/* What a fault found at its index (the trace events, trace.h). */
enum vmcoh_fault_found {
	VMCOH_FOUND_BLOCK,	/* a block, mapped */
	VMCOH_FOUND_HOLE,	/* a hole: the zero page, or a new block */
	VMCOH_FOUND_LOADING,	/* a load in flight, waited for */
	VMCOH_FOUND_LOAD,	/* nothing resident: it started a load */
	VMCOH_FOUND_DROP,	/* a DROP in flight, waited for */
	VMCOH_FOUND_WINDOW,	/* no room in the window, waited for */
	VMCOH_FOUND_FALLBACK,	/* a PMD fault that fell back to PTEs */
	VMCOH_FOUND_EOF,	/* beyond EOF: SIGBUS */
};

/* Why the window reclaims a range (window.c). */
enum vmcoh_reclaim_why {
	VMCOH_RECLAIM_INLINE,		/* read(2) or write(2) */
	VMCOH_RECLAIM_BACKGROUND,	/* the window's worker */
	VMCOH_RECLAIM_SHRINKER,		/* memory pressure */
	VMCOH_RECLAIM_FAULT,		/* a fault that let go of its locks */
};

/* blockmap.c */
#define VMCOH_BLOCK_DIRTY	XA_MARK_0	/* not yet STOREd to the server */

void vmcoh_blockmap_init(struct vmcoh_blockmap *map, loff_t size,
			 unsigned long max_blocks);
void vmcoh_blockmap_destroy(struct vmcoh_dev *dev);
struct page *vmcoh_block_lookup(struct vmcoh_blockmap *map, pgoff_t index);
unsigned long vmcoh_blocks_history(struct vmcoh_blockmap *map, pgoff_t index,
				   unsigned long max);
unsigned long vmcoh_blocks_lookup_window(struct vmcoh_blockmap *map,
					 pgoff_t first, unsigned int nr,
					 struct page **blocks);
struct page *vmcoh_block_get(struct vmcoh_blockmap *map, pgoff_t index);
unsigned long vmcoh_blocks_trylock_window(struct vmcoh_blockmap *map,
					  pgoff_t first, unsigned int nr,
					  unsigned long want,
					  struct page **blocks);
void vmcoh_blocks_unlock_window(struct page **blocks, unsigned long locked);
struct page *vmcoh_block_alloc(struct vmcoh_dev *dev, bool zero);
struct page *vmcoh_block_new(struct vmcoh_dev *dev);
struct page *vmcoh_block_store(struct vmcoh_blockmap *map, pgoff_t index,
			       struct page *block, bool fill,
			       struct page *src, bool *stored);
struct page *vmcoh_block_publish(struct vmcoh_dev *dev, pgoff_t index,
				 struct page *block, bool *ours);
unsigned long vmcoh_blocks_store_copies(struct vmcoh_blockmap *map,
					pgoff_t first, unsigned long want,
					struct page *row,
					struct page *const *pages,
					struct page *const *srcs);
unsigned long vmcoh_blocks_publish(struct vmcoh_dev *dev, pgoff_t first,
				   unsigned long want,
				   struct page *const *srcs);
void vmcoh_block_free(struct vmcoh_dev *dev, struct page *block);
void vmcoh_blocks_remove(struct vmcoh_dev *dev, pgoff_t first, pgoff_t last,
			 struct vmcoh_block_list *list);
void vmcoh_blockmap_set_size(struct vmcoh_dev *dev, loff_t size,
			     struct vmcoh_block_list *list);
void vmcoh_blocks_free(struct vmcoh_dev *dev, struct vmcoh_block_list *list);
void vmcoh_blocks_hole(struct vmcoh_blockmap *map, pgoff_t index,
		       pgoff_t *first, pgoff_t *last);
loff_t vmcoh_blockmap_seek(struct vmcoh_blockmap *map, loff_t pos, int whence);
bool vmcoh_block_mark_dirty(struct vmcoh_dev *dev, pgoff_t index,
			    struct page *block);
struct page *vmcoh_block_clear_dirty(struct vmcoh_blockmap *map,
				     pgoff_t index);
bool vmcoh_blocks_dirty(struct vmcoh_blockmap *map, pgoff_t *index,
			pgoff_t last);

static inline loff_t vmcoh_size(struct vmcoh_dev *dev)
{
	return READ_ONCE(dev->map.size);
}

static inline pgoff_t vmcoh_size_pages(struct vmcoh_dev *dev)
{
	return vmcoh_size(dev) >> PAGE_SHIFT;
}

/* entry.c */
#define VMCOH_ENTRY_LOCKED	BIT(0)
#define VMCOH_ENTRY_PMD		BIT(1)	/* covers a 2 MiB region */
#define VMCOH_ENTRY_ZERO	BIT(2)	/* page tables may map the zero page */
#define VMCOH_ENTRY_EMPTY	BIT(3)	/* lock only: nothing mapped yet */

int vmcoh_entries_init(struct vmcoh_entries *entries,
		       const struct vmcoh_entry_load_ops *load_ops);
void vmcoh_entries_destroy(struct vmcoh_entries *entries);
int vmcoh_entry_grab(struct vmcoh_dev *dev, pgoff_t index, void **entryp);
int vmcoh_entry_grab_pmd(struct vmcoh_dev *dev, pgoff_t first, void **entryp);
void vmcoh_entry_start_load(struct vmcoh_entries *entries, pgoff_t index,
			    struct vmcoh_req *load, pgoff_t *first,
			    pgoff_t *last);
bool vmcoh_entry_claim_load(struct vmcoh_entries *entries, pgoff_t index,
			    struct vmcoh_req *load);
unsigned long vmcoh_entries_claim_loads(struct vmcoh_entries *entries,
					pgoff_t first, unsigned int nr,
					struct vmcoh_req *load);
bool vmcoh_entry_drop_load(struct vmcoh_entries *entries, pgoff_t index,
			   struct vmcoh_req *load);
bool vmcoh_entry_trylock_absent(struct vmcoh_entries *entries, pgoff_t index);
void vmcoh_entry_unlock(struct vmcoh_entries *entries, pgoff_t index,
			unsigned long flags);
unsigned long vmcoh_entries_remove(struct vmcoh_dev *dev, pgoff_t first,
				   pgoff_t last);
void vmcoh_entries_cancel_loads(struct vmcoh_dev *dev, pgoff_t first,
				pgoff_t last);
unsigned long vmcoh_entries_trim(struct vmcoh_dev *dev);
unsigned long vmcoh_entries_trylock(struct vmcoh_dev *dev, pgoff_t first,
				    unsigned long want, unsigned long *flags);
void vmcoh_entries_unlock(struct vmcoh_entries *entries, pgoff_t first,
			  unsigned long locked, const unsigned long *flags);

static inline bool vmcoh_entry_is_zero(void *entry)
{
	return xa_is_value(entry) && (xa_to_value(entry) & VMCOH_ENTRY_ZERO);
}

/*
 * A non-zero status that is not an error: vmcoh_entry_grab() found a load in
 * flight at the index and returned it instead of a locked entry.
 */
#define VMCOH_LOADING	1

/* backing.c */
extern unsigned int vmcoh_load_timeout_ms;

static inline unsigned int vmcoh_load_timeout(struct vmcoh_dev *dev)
{
	int ms = READ_ONCE(dev->load_timeout_ms);

	return ms < 0 ? READ_ONCE(vmcoh_load_timeout_ms) : ms;
}

static inline bool vmcoh_backed(struct vmcoh_dev *dev)
{
	return READ_ONCE(dev->backing.state) != VMCOH_BACKING_NONE;
}

/*
 * Served: a server is attached, which can load again whatever is given up.
 * An orphaned object cannot: it keeps its resident blocks (uapi header).
 */
static inline bool vmcoh_served(struct vmcoh_dev *dev)
{
	return READ_ONCE(dev->backing.state) == VMCOH_BACKING_SERVED;
}

static inline bool vmcoh_writable(struct vmcoh_dev *dev)
{
	return vmcoh_served(dev) &&
	       READ_ONCE(dev->backing.writable);
}

extern const struct vmcoh_entry_load_ops vmcoh_entry_loads;

struct vmcoh_req *vmcoh_req_new(struct vmcoh_dev *dev, pgoff_t index,
				u32 op);
int vmcoh_req_wait(struct vmcoh_dev *dev, struct vmcoh_req *req,
		   pgoff_t index);
void vmcoh_req_finish(struct vmcoh_req *req, struct page **blocks, int err);
void vmcoh_req_put(struct vmcoh_req *req);

static inline struct vmcoh_req *vmcoh_req_get(struct vmcoh_req *req)
{
	kref_get(&req->ref);
	return req;
}

struct vmcoh_req *vmcoh_load_start(struct vmcoh_dev *dev, pgoff_t index,
				   unsigned long flags);
struct vmcoh_req *vmcoh_load_start_region(struct vmcoh_dev *dev,
					  pgoff_t first, unsigned long flags);
bool vmcoh_load_scattered(struct vmcoh_dev *dev, pgoff_t index);
void vmcoh_load_finish(struct vmcoh_req *load, struct page **blocks,
		       int err);
void vmcoh_load_finish_copy(struct vmcoh_req *load, struct page **pages);

int vmcoh_load_block(struct vmcoh_dev *dev, pgoff_t index,
		     struct vmcoh_req **loadp);
void vmcoh_readahead(struct vmcoh_dev *dev, pgoff_t index);
int vmcoh_backing_invalidate(struct vmcoh_dev *dev, loff_t offset,
			     loff_t len);
bool vmcoh_backing_drop_all(struct vmcoh_dev *dev);

/* writeback.c */
int vmcoh_writeback(struct vmcoh_dev *dev, pgoff_t first, pgoff_t last);
void vmcoh_store_finish(struct vmcoh_req *store, int err);
int vmcoh_drop(struct vmcoh_dev *dev, loff_t offset, loff_t len);
int vmcoh_drop_range(struct vmcoh_dev *dev, pgoff_t first, pgoff_t last,
		     enum vmcoh_op op);
bool __vmcoh_drop_pending(struct vmcoh_dev *dev, pgoff_t first, pgoff_t last);
int vmcoh_drop_begin(struct vmcoh_dev *dev);
void vmcoh_drop_end(struct vmcoh_dev *dev);
int vmcoh_drop_wait(struct vmcoh_dev *dev, pgoff_t index);

/*
 * Is a DROP in progress over any of [@first, @last]?  Asked under the entry
 * lock of the index (or io_rwsem), after which it is exact: a DROP sets its
 * range before it waits for entry locks and io_rwsem (see writeback.c).
 */
static inline bool vmcoh_drop_pending(struct vmcoh_dev *dev, pgoff_t first,
				      pgoff_t last)
{
	return unlikely(READ_ONCE(dev->backing.dropping)) &&
	       __vmcoh_drop_pending(dev, first, last);
}

/* server.c */
void vmcoh_backing_init(struct vmcoh_backing *backing);
void vmcoh_backing_destroy(struct vmcoh_backing *backing);
int vmcoh_server_submit(struct vmcoh_dev *dev, struct vmcoh_req *req);
void vmcoh_server_cancel(struct vmcoh_dev *dev, struct vmcoh_req *req,
			 int err);
long vmcoh_ioctl_server(struct file *file, unsigned int cmd,
			void __user *arg);
void vmcoh_server_release(struct file *file);
void vmcoh_server_flush(struct file *file, fl_owner_t id);
bool vmcoh_server_waits_on_itself(struct vmcoh_dev *dev);
__poll_t vmcoh_server_poll(struct file *file, struct poll_table_struct *pt);

/* invalidate.c */
void vmcoh_invalidate(struct vmcoh_dev *dev, pgoff_t first, pgoff_t last,
		      enum vmcoh_op op, struct vmcoh_block_list *blocks);
int vmcoh_punch_hole(struct vmcoh_dev *dev, loff_t offset, loff_t len);
int vmcoh_set_size(struct vmcoh_dev *dev, loff_t size);
int vmcoh_around_begin(struct vmcoh_dev *dev);
void vmcoh_around_end(struct vmcoh_dev *dev, int slot);

/*
 * Does fault-around map @dev's present blocks counted, under no lock of
 * ours (fault.c, "Counted fault-around")?  In a window, when there is
 * fault-around at all.  Then PTEs may exist with no entry.
 */
static inline bool vmcoh_around_counted(struct vmcoh_dev *dev)
{
	return dev->window.nr_ranges && dev->fault_around > 1;
}

/* fault.c */
extern const struct vm_operations_struct vmcoh_vm_ops;

/* io.c */
ssize_t vmcoh_read_iter(struct kiocb *iocb, struct iov_iter *to);
ssize_t vmcoh_write_iter(struct kiocb *iocb, struct iov_iter *from);

/* ioctl.c */
long vmcoh_ioctl(struct file *file, unsigned int cmd, unsigned long arg);
bool vmcoh_reserved_zero(const __u64 *words, size_t n);
bool vmcoh_range_valid(const struct vmcoh_range *req);
u64 vmcoh_counter_read(struct vmcoh_dev *dev, enum vmcoh_counter counter);
void vmcoh_read_stats(struct vmcoh_dev *dev, struct vmcoh_stats *stats);

/*
 * Every PTE of a hole takes a reference to the device's zero page, and a
 * GUP pin GUP_PIN_COUNTING_BIAS (1024): past 2^30 of them holes get SIGBUS
 * rather than let the count run towards overflow (fault.c).
 */
#define VMCOH_ZERO_PAGE_MAX_REFS	BIT(30)

/* window.c */
static inline bool vmcoh_window_enabled(struct vmcoh_dev *dev)
{
	return dev->window.nr_ranges;
}

/*
 * Is @err the window refusing a block for a while, which a wait holding
 * nothing may end: a pin of the page's old block (-EBUSY), or memory for a
 * range that a harder try may get (-ENOMEM)?
 */
static inline bool vmcoh_window_refused(struct vmcoh_dev *dev, int err)
{
	return err == -EBUSY ||
	       (err == -ENOMEM && vmcoh_window_enabled(dev));
}

int vmcoh_window_create(struct vmcoh_dev *dev, unsigned int nr_ranges);
int vmcoh_window_init(struct vmcoh_dev *dev);
void vmcoh_window_stop(struct vmcoh_dev *dev);
void vmcoh_window_destroy(struct vmcoh_dev *dev);
int vmcoh_window_reserve(struct vmcoh_dev *dev, pgoff_t index,
			 bool scattered);
bool vmcoh_window_reads_ahead(struct vmcoh_dev *dev);
void vmcoh_window_want_range(struct vmcoh_dev *dev);
struct page *vmcoh_window_resident(struct vmcoh_dev *dev, pgoff_t first);
bool vmcoh_window_region_empty(struct vmcoh_dev *dev, pgoff_t first);
void vmcoh_window_touch(struct vmcoh_dev *dev, pgoff_t index);
struct page *vmcoh_window_publish(struct vmcoh_dev *dev, pgoff_t index,
				  struct page *src, bool *ours);
int vmcoh_window_reclaim_inline(struct vmcoh_dev *dev, pgoff_t index);
int vmcoh_window_reclaim_fault(struct vmcoh_dev *dev, pgoff_t index);
int vmcoh_window_reclaim_in_fault(struct vmcoh_dev *dev, pgoff_t index);
int vmcoh_window_wait(struct vmcoh_dev *dev);
int vmcoh_window_wait_unpinned(struct vmcoh_dev *dev, pgoff_t index);
int vmcoh_window_wait_refused(struct vmcoh_dev *dev, pgoff_t index, int err);
void vmcoh_window_read_stats(struct vmcoh_dev *dev,
			     struct vmcoh_window_stats *stats);

/* device.c */
#define VMCOH_MAX_OBJECT_SIZE	BIT_ULL(40)	/* 1 TiB of (sparse) object */

#endif /* VMCOH_H */
