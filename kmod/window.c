// SPDX-License-Identifier: GPL-2.0
/*
 * The window: a bounded pool of 2 MiB ranges that resident blocks live in,
 * as in the DAX window of virtiofs
 * (../shared/seeds/lkml-2020-virtiofs-dax-range-reclaim.txt).
 *
 * With window_mb > 0 the pool has window_mb / 2 ranges.  A range is one
 * compound page of order 9, so that a 2 MiB mapping of it is possible and
 * GUP through any mapping of it works.  It belongs to one aligned 2 MiB
 * region of the object at a time, and block i of the region is page i of
 * the range: there is no other placement to track.
 *
 * Taking a range.  A region takes a free range when one of its blocks is
 * first published (vmcoh_window_publish()), or earlier, before a load is
 * sent (vmcoh_window_reserve()), so that the server's answer finds it.  A
 * free range whose memory the shrinker gave back is allocated again then:
 * quickly, since the caller may hold an entry lock; if that fails, the
 * caller lets go of its locks and vmcoh_window_wait() allocates it with
 * reclaim and compaction, and the access fails (SIGBUS, -ENOMEM) only if
 * that fails too.
 *
 * An index always has the same page, so its contents are written into it
 * (copied, or zeroed) only at publication, under the block map's lock,
 * where the index is seen to be a hole: two tasks publishing the same
 * index never both write the page, the loser finds the winner's block.
 * Freeing a block writes nothing, because the page may be published again
 * before the invalidation that removed it gets to free it: faults and
 * loads publish without io_rwsem, right after the entries are gone.  A
 * stale PTE that still maps the page until the unmap sees the index's
 * newer contents, never another index's.
 *
 * Giving it back.  A range returns to the pool when its region has no
 * block left and the pool holds the only reference to its pages (no PTE
 * maps a block, no GUP pin holds one, no STORE is in flight): after a
 * punch, shrink or invalidation freed its last block, or after a reclaim.
 * A pinned range stays with its region, empty, until a later reclaim finds
 * it idle (tasks waiting for a range ask for one every second): a pin
 * never reaches memory another region uses.
 *
 * Pins.  A GUP reference (O_DIRECT, process_vm_writev(), vmsplice; the
 * core refuses io_uring's long-term pins of our mappings: io_uring itself
 * on 6.1, GUP on 6.12, which keeps FOLL_LONGTERM writes away from
 * mappings with ->page_mkwrite) holds a page, not a block.  In the page
 * cache, or in an object without a window, the block a punch frees goes
 * with the pin, and a store through the pin lands in memory nobody reads.
 * Here the index's next block is the same page, so such a store would land
 * on data written after the punch returned.  So a page is not published
 * again while its old block may still be written through a pin, as
 * fs/dax.c's truncation waits for pinned pages (dax_layout_busy_page()):
 * a publication, or a reservation for a load, of an index whose block is
 * being freed, or was freed while the range was pinned (range->pinned),
 * fails with -EBUSY while the range is pinned, and its caller waits,
 * holding nothing (vmcoh_window_wait_unpinned()).  Pinned means referenced
 * beyond the pool's reference and one per page-table mapping
 * (range_pinned()); refcounts are the compound page's, so a pin of any of
 * its pages counts, as do a STORE in flight and a fault between its
 * get_page() and its rmap: the wait is conservative, and short but for
 * pins.  A pin taken after the check, through a PTE the invalidation has
 * not unmapped yet, writes the index's new block, as a store through that
 * PTE does (see above).
 *
 * Reclaiming a range of a backed object is a DROP of its region
 * (writeback.c): faults and I/O on the region wait, dirty blocks are
 * written back, loads are cancelled, then block map, entries, one ranged
 * unmap, and the blocks are freed; then the range goes back to the pool
 * and the waiters for a free range are woken.  Who reclaims:
 *
 *   - the worker, to keep window_reserve ranges free, and for the
 *     shrinker, which only asks: a shrinker runs in the allocations of
 *     tasks that may hold entry locks or wait for the server itself;
 *   - read(2) and write(2), inline, holding nothing of vmcoh's: they drop
 *     io_rwsem first, and reclaim a range other than the one they need;
 *   - a fault, but never where it found the pool empty.  There it holds its
 *     entry lock, and mmap_lock or the VMA lock; a reclaim takes io_rwsem,
 *     which ranks above both, and waits for entry locks.  So it lets go of
 *     its entry lock, and of mmap_lock or the VMA lock when it may retry,
 *     and then, holding nothing, as read(2) does, reclaims a range of
 *     another region itself (vmcoh_window_reclaim_fault()) and starts over
 *     - what fuse DAX settled on in the seed's thread.  A fault that may
 *     not let go of mmap_lock waits for the worker instead.  Reclaiming
 *     rather than waiting saves the worker's two wakeups: a fourth of a
 *     random miss's time beyond the window (docs/bench.md).
 *     unsafe=reclaim_in_fault reclaims holding the entry lock: a server
 *     INVALIDATE that holds io_rwsem and waits for that entry lock then
 *     deadlocks with it.
 *
 * Which range goes.  Strict LRU evicts, in a pass over a working set
 * larger than the window, exactly the range the pass needs next, and every
 * access misses.  So the window remembers the regions it reclaimed - a
 * shadow (a value entry) in the region's slot of the regions xarray, as
 * the page cache leaves one where it evicted a page (mm/workingset.c) -
 * and a region that takes a range again while it has a shadow (a refault)
 * gets an active range, while fewer than half the ranges are active.  A
 * reclaim takes the least recently used inactive range, and an active one
 * only if no inactive one can go.  Active ranges age as the page cache's
 * active list does: at every WINDOW_AGE_PERIOD-th reclaim, the oldest
 * active range is demoted unless it was referenced - mapped by a fault, or
 * read by read(2) - since it was last looked at; a referenced one gets a
 * second chance at the tail.  A loop over twice the window then keeps
 * hitting the half of its regions that won a range first, where LRU hit
 * nothing; a working set that moves on is forgotten within a few
 * windowfuls of reclaims.  Shadows are bounded: past WINDOW_SHADOWS_MAX
 * per range, a reclaim forgets them all.
 *
 * Sparse regions.  A range holds a region's blocks in place, so a region
 * read at random holds 2 MiB of memory for the few runs of VMCOH_LOAD_RUN_MIN
 * blocks its misses loaded: beyond the window, random 4 KiB loads kept a
 * fourth of the window's memory in data (docs/bench.md), where the page
 * cache keeps single pages.  So a region that comes back (it has a
 * shadow) through a scattered miss (vmcoh_load_scattered(): read-around,
 * not a sequential pass), and whose reclaim did not take it whole (the
 * shadow says how many blocks it took), is given pages of its own
 * instead: a sparse
 * range, a descriptor without memory, whose blocks are order-0 pages
 * allocated as they are published and freed with them, as in an object
 * without a window.  The pool's bound becomes a budget of pages (nr_pages,
 * the ranges' worth): a range with memory, free or owned, uses
 * VMCOH_RANGE_PAGES of it, a sparse block one.  A sparse block that does
 * not fit takes the memory of a free range (which gets memory again when a
 * region takes it and the budget has room), or fails with -ENOSPC, and its
 * caller reclaims, as for a range; a load is sent only if the budget has
 * room for a run (vmcoh_window_reserve()).  A sparse region is never
 * mapped by a PMD, and a sequential pass through one loads into pages of
 * its own too; a reclaimed one comes back with a range unless as above.
 * Pins need nothing: a sparse block's page is never another block's, and
 * a pin keeps a freed one alive, outside the budget, as in the page cache.
 *
 * An object without a server cannot give its blocks back.  Its ranges
 * return to the pool only when their blocks are punched or truncated; once
 * the pool is empty, writes fail with -ENOSPC and write faults with
 * SIGBUS, as at the max_mb cap.
 *
 * Lock order: see vmcoh.h.  regions.xa_lock is the window's lock (the
 * pool's lists and counts, each range's owner and block count); it is a
 * leaf, never held across a sleep nor together with another xa_lock.  A
 * reclaim takes drop_mutex, wb_mutex, io_rwsem and entry locks (a DROP),
 * holding none of its own.
 */

#include <linux/highmem.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/sched/signal.h>
#include <linux/shrinker.h>
#include <linux/slab.h>
#include <linux/workqueue.h>

#include "compat.h"
#include "hooks.h"
#include "trace.h"
#include "vmcoh.h"

static unsigned int window_mb;
module_param(window_mb, uint, 0444);
MODULE_PARM_DESC(window_mb,
		 "Bound resident blocks to this many MiB of 2 MiB ranges, reclaimed from backed objects when they run out (default 0: no window, max_mb caps blocks)");

static int window_reserve = -1;
module_param(window_reserve, int, 0644);
MODULE_PARM_DESC(window_reserve,
		 "Free ranges the reclaim worker keeps, at most all but one; -1 for an eighth of the window, at least 1 (default -1)");

/* Every this many reclaims, the oldest active range is looked at. */
#define WINDOW_AGE_PERIOD	8
/* Sparse descriptors per range of the pool, at most. */
#define WINDOW_SPARSE_PER_RANGE	32
/* Shadows kept per range of the pool, at most. */
#define WINDOW_SHADOWS_MAX	16
/*
 * A shadow: the value entry a reclaimed region leaves in its slot, which
 * says how many blocks the reclaim took.
 */
static inline void *window_shadow(unsigned int blocks)
{
	return xa_mk_value(blocks);
}

/*
 * A region that comes back through a scattered miss gets a sparse range if
 * its reclaim took fewer blocks than this: one that was read in full, by a
 * pass that now starts over, gets a range again (see "Sparse regions").
 */
#define WINDOW_SPARSE_BELOW	VMCOH_RANGE_PAGES

/* The one device: the shrinker's callbacks find it here. */
static struct vmcoh_dev *window_dev;

static inline pgoff_t range_region(pgoff_t index)
{
	BUILD_BUG_ON((PAGE_SIZE << VMCOH_RANGE_ORDER) != VMCOH_RANGE_SIZE);
	return index >> VMCOH_RANGE_ORDER;
}

/*
 * The memory of a range: quickly (__GFP_NORETRY) where a lock of ours may
 * be held, or @hard (reclaim and compaction, __GFP_RETRY_MAYFAIL) by a task
 * that holds none and would otherwise have to give up.
 */
static struct page *range_alloc(bool hard)
{
	if (vmcoh_fail_range(hard))
		return NULL;
	return alloc_pages(GFP_HIGHUSER | __GFP_COMP | __GFP_ZERO | __GFP_NOWARN |
			   (hard ? __GFP_RETRY_MAYFAIL : __GFP_NORETRY),
			   VMCOH_RANGE_ORDER);
}

/* The range of @region, under the window's lock or RCU; not a shadow. */
static struct vmcoh_window_range *range_of(struct vmcoh_window *w,
					   pgoff_t region)
{
	void *range = xa_load(&w->regions, region);

	return xa_is_value(range) ? NULL : range;
}

/*
 * Idle: nothing but the pool holds the range's pages.  A sparse range's
 * pages are its blocks', which go with them: always.
 */
static bool range_idle(struct vmcoh_window_range *range)
{
	return range->sparse || page_count(range->head) == 1;
}

/*
 * Referenced beyond the pool's reference and the one of each page-table
 * entry that maps a page of it: a GUP pin, a STORE in flight, or a
 * mapping on its way in or out.  PMDs hold neither a reference nor a
 * mapcount.
 */
static bool range_pinned(struct vmcoh_window_range *range)
{
	struct folio *folio;

	/* A sparse block's page is never another block's: no wait. */
	if (range->sparse)
		return false;
	folio = page_folio(range->head);

	return folio_ref_count(folio) - 1 > vmcoh_folio_mapcount(folio);
}

/*
 * May the page of @index back it again?  Not while the range is pinned,
 * if the index's block is being freed, or was freed while it was pinned.
 * unsafe=reuse_pinned says yes at once, as if no pin could write through
 * the page: a store through a pin taken before the punch then lands in
 * the index's next block.  Called with the window's lock held.
 */
static bool range_slot_unpinned(struct vmcoh_window_range *range,
				pgoff_t index)
{
	unsigned int slot = index & (VMCOH_RANGE_PAGES - 1);

	if (vmcoh_unsafe(VMCOH_UNSAFE_REUSE_PINNED) ||
	    (!test_bit(slot, range->pinned) && !test_bit(slot, range->freeing)))
		return true;
	if (range_pinned(range))
		return false;
	__clear_bit(slot, range->pinned);
	return true;
}

static void window_wake(struct vmcoh_window *w)
{
	wake_up_all(&w->free_wait);
}

/*
 * Forget every shadow once there are more than WINDOW_SHADOWS_MAX per
 * range.  Called holding no lock of the window's: the walk lets go of it
 * every VMCOH_WALK_BATCH entries.
 */
static void window_prune_shadows(struct vmcoh_window *w)
{
	XA_STATE(xas, &w->regions, 0);
	unsigned long seen = 0;
	void *entry;

	if (READ_ONCE(w->nr_shadows) <= WINDOW_SHADOWS_MAX * w->nr_ranges)
		return;
	xas_lock(&xas);
	xas_for_each(&xas, entry, ULONG_MAX) {
		if (xa_is_value(entry)) {
			xas_store(&xas, NULL);
			WRITE_ONCE(w->nr_shadows, w->nr_shadows - 1);
		}
		if (++seen % VMCOH_WALK_BATCH == 0 || need_resched())
			vmcoh_xas_relax(&xas);
	}
	xas_unlock(&xas);
}

/*
 * Give @range back to the pool if its region has no block left and nothing
 * else holds its pages; a reclaim leaves a @shadow in the slot
 * (window_shadow()), others NULL.  Called with the window's lock held.
 */
static bool range_release_locked(struct vmcoh_window *w,
				 struct vmcoh_window_range *range, void *shadow)
	__must_hold(&w->regions.xa_lock)
{
	if (range->nr_blocks || range->reclaiming || !range_idle(range))
		return false;
	/* Over the range's own slot: nothing to allocate, cannot fail. */
	__xa_store(&w->regions, range->region, shadow, GFP_ATOMIC);
	if (shadow)
		WRITE_ONCE(w->nr_shadows, w->nr_shadows + 1);
	if (range->active)
		w->nr_active--;
	range->active = false;
	bitmap_zero(range->pinned, VMCOH_RANGE_PAGES);	/* idle: unpinned */
	if (range->sparse) {
		list_move(&range->lru, &w->sparse_free);
		w->nr_sparse--;
	} else {
		list_move(&range->lru, &w->free);
		WRITE_ONCE(w->nr_free, w->nr_free + 1);
		w->nr_populated_free++;
	}
	WRITE_ONCE(w->released, w->released + 1);
	return true;
}

/* The budget's pages left.  Called with the window's lock held. */
static unsigned long window_room_locked(struct vmcoh_window *w)
	__must_hold(&w->regions.xa_lock)
{
	return w->nr_pages - w->pages_used;
}

/*
 * Make room in the budget for @nr pages of sparse blocks, taking the memory
 * of a free range if there is not: its compound page goes to *@give, which
 * the caller puts once it has let go of the lock.  Called with the window's
 * lock held.  Return whether there is room.
 */
static bool window_make_room_locked(struct vmcoh_window *w, unsigned long nr,
				    struct page **give)
	__must_hold(&w->regions.xa_lock)
{
	struct vmcoh_window_range *range;

	if (window_room_locked(w) >= nr)
		return true;
	if (*give || !w->nr_populated_free)
		return false;
	list_for_each_entry(range, &w->free, lru) {
		if (range->head) {
			*give = range->head;
			range->head = NULL;
			w->nr_populated_free--;
			w->pages_used -= VMCOH_RANGE_PAGES;
			break;
		}
	}
	return window_room_locked(w) >= nr;
}

/*
 * Free ranges a region could take now: with memory, or without and with
 * room in the budget for it.  A hint, read without the window's lock.
 */
static unsigned int window_free_ranges(struct vmcoh_window *w)
{
	/* data_race(): a hint; both change under the window's lock. */
	long room = (long)w->nr_pages - (long)data_race(w->pages_used);
	/* data_race(): as above. */
	unsigned long n = data_race(w->nr_populated_free);

	if (room > 0)
		n += room / VMCOH_RANGE_PAGES;
	return min_t(unsigned long, n, READ_ONCE(w->nr_free));
}

/* What window_get_batch() brings along for range_get_locked(). */
struct window_spare {
	struct page *head;		/* memory for a free range */
	struct vmcoh_window_range *desc;	/* a sparse descriptor */
	bool want_desc;			/* none free: bring one */
};

/* A sparse descriptor, not yet the pool's. */
static struct vmcoh_window_range *sparse_desc_alloc(void)
{
	struct vmcoh_window_range *range = kzalloc(sizeof(*range), GFP_KERNEL);

	if (range) {
		range->sparse = true;
		INIT_LIST_HEAD(&range->lru);
	}
	return range;
}

/*
 * A sparse descriptor for a region that comes back through a scattered
 * miss: a free one, or the one @spare brought (then the pool's).  NULL,
 * with @spare->want_desc set if more may be had, if none.
 */
static struct vmcoh_window_range *
sparse_get_locked(struct vmcoh_window *w, struct window_spare *spare)
	__must_hold(&w->regions.xa_lock)
{
	struct vmcoh_window_range *range;

	range = list_first_entry_or_null(&w->sparse_free,
					 struct vmcoh_window_range, lru);
	if (!range && spare->desc) {
		range = spare->desc;
		spare->desc = NULL;
		list_add(&range->lru, &w->sparse_free);
		w->nr_sparse_descs++;
	}
	if (!range)
		spare->want_desc = w->nr_sparse_descs <
				   w->nr_ranges * WINDOW_SPARSE_PER_RANGE;
	return range;
}

/*
 * The range of @index's region, taking a free one for it if it has none.
 * Called with the window's lock held, through @xas.  A free range without
 * memory gets @spare, if the caller brought one.  Return the range, or
 * NULL if none is free (or only ones without memory, and no @spare).
 */
static struct vmcoh_window_range *
range_get_locked(struct vmcoh_window *w, struct xa_state *xas,
		 struct window_spare *spare, bool scattered, bool *refault)
	__must_hold(&w->regions.xa_lock)
{
	void *slot = xas_load(xas);
	struct vmcoh_window_range *range = NULL;
	bool room = window_room_locked(w) >= VMCOH_RANGE_PAGES;

	*refault = false;
	if (slot && !xa_is_value(slot)) {
		range = slot;
		list_move_tail(&range->lru, &w->busy);
		return range;
	}
	/* Back through a scattered miss: pages of its own, see above. */
	if (scattered && xa_is_value(slot) &&
	    xa_to_value(slot) < WINDOW_SPARSE_BELOW) {
		range = sparse_get_locked(w, spare);
		if (!range && spare->want_desc)
			return NULL;
	}
	if (!range) {
		list_for_each_entry(range, &w->free, lru) {
			if (range->head || (spare->head && room))
				break;
		}
		if (list_entry_is_head(range, &w->free, lru))
			return NULL;
	}
	*refault = xa_is_value(slot);
	xas_store(xas, range);
	if (xas_error(xas))
		return NULL;
	if (*refault)
		WRITE_ONCE(w->nr_shadows, w->nr_shadows - 1);
	if (range->sparse) {
		w->nr_sparse++;
	} else if (range->head) {
		w->nr_populated_free--;
		WRITE_ONCE(w->nr_free, w->nr_free - 1);
	} else {
		range->head = spare->head;
		spare->head = NULL;
		w->pages_used += VMCOH_RANGE_PAGES;
		WRITE_ONCE(w->nr_free, w->nr_free - 1);
	}
	range->region = xas->xa_index;
	/* A region reclaimed before comes back: protect it, see above. */
	range->active = !range->sparse && *refault &&
			w->nr_active < w->nr_ranges / 2;
	if (range->active)
		w->nr_active++;
	range->referenced = false;
	list_move_tail(&range->lru, &w->busy);
	return range;
}

/*
 * The free ranges the worker keeps: never the whole window, or a window of
 * one range would be taken back from every region that got it.
 */
static unsigned int window_reserve_now(struct vmcoh_window *w)
{
	int reserve = READ_ONCE(window_reserve);
	unsigned int most = w->nr_ranges - 1;

	if (reserve < 0)
		return min(max(1U, w->nr_ranges / 8), most);
	return min_t(unsigned int, reserve, most);
}

/*
 * Does the pool need the worker: too few free ranges, a shrink asked, or a
 * fault waits for a range and none is free?
 */
static bool window_wants_reclaim(struct vmcoh_window *w)
{
	unsigned int nr_free = window_free_ranges(w);

	return nr_free < window_reserve_now(w) ||
	       READ_ONCE(w->shrink_target) ||
	       (!nr_free && (atomic_read(&w->waiters) ||
			     READ_ONCE(w->ahead_wants)));
}

static void window_kick(struct vmcoh_dev *dev)
{
	struct vmcoh_window *w = &dev->window;

	if (window_wants_reclaim(w) && vmcoh_served(dev))
		queue_work(system_unbound_wq, &w->work);
}

/* Clear the bits of @want whose pages in @range may not back them. */
static unsigned long range_slots_unpinned(struct vmcoh_window_range *range,
					  pgoff_t first, unsigned long want)
{
	unsigned int i;

	for_each_set_bit(i, &want, BITS_PER_LONG) {
		if (!range_slot_unpinned(range, first + i))
			__clear_bit(i, &want);
	}
	return want;
}

/*
 * The range of @first's region, or a free one taken for it - a sparse one
 * for a region that comes back through a @scattered miss - whose pages
 * for the bits of *@want (indices @first + i, all of the region) may back
 * them (see "Pins" above); the bits of those that may not are cleared.
 * With @publish, the range counts a block for each bit left.  Return it,
 * NULL if the pool has none, ERR_PTR(-EBUSY) if every page may still be
 * written through a pin, or ERR_PTR(-ENOMEM): the free ranges have no
 * memory, and a quick allocation got none (vmcoh_window_wait() tries
 * harder).
 */
static struct vmcoh_window_range *
window_get_batch(struct vmcoh_dev *dev, pgoff_t first, unsigned long *want,
		 bool publish, bool scattered)
{
	struct vmcoh_window *w = &dev->window;
	XA_STATE(xas, &w->regions, range_region(first));
	struct vmcoh_window_range *range;
	struct window_spare spare = {};
	unsigned long left = 0;
	bool no_memory, pinned, refault = false;

	for (;;) {
		spare.want_desc = false;
		xas_lock(&xas);
		range = range_get_locked(w, &xas, &spare, scattered, &refault);
		if (range)
			left = range_slots_unpinned(range, first, *want);
		pinned = range && !left;
		if (pinned)
			range = NULL;
		else if (range && publish)
			range->nr_blocks += hweight_long(left);
		/* Only free ranges without memory: bring some along. */
		no_memory = !range && !pinned && !xas_error(&xas) &&
			    !spare.want_desc && w->nr_free && !spare.head &&
			    window_room_locked(w) >= VMCOH_RANGE_PAGES;
		xas_unlock(&xas);
		if (xas_nomem(&xas, GFP_KERNEL))
			continue;
		if (!range && spare.want_desc) {
			spare.desc = sparse_desc_alloc();
			if (!spare.desc)
				scattered = false;	/* a range, then */
			continue;
		}
		if (!no_memory)
			break;
		spare.head = range_alloc(false);
		if (!spare.head)
			break;	/* still no_memory */
	}
	if (spare.head)
		put_page(spare.head);
	kfree(spare.desc);
	if (refault)
		vmcoh_count(dev, range && range->sparse ?
			    VMCOH_WINDOW_SPARSE_TAKEN : VMCOH_WINDOW_REFAULTS);
	window_kick(dev);
	if (xas_error(&xas) || no_memory)
		return ERR_PTR(xas_error(&xas) ?: -ENOMEM);
	if (range)
		*want = left;
	return pinned ? ERR_PTR(-EBUSY) : range;
}

/* The range of @index's region: window_get_batch() of the one index. */
static struct vmcoh_window_range *
window_get(struct vmcoh_dev *dev, pgoff_t index, bool publish,
	   bool scattered)
{
	unsigned long want = 1;

	return window_get_batch(dev, index, &want, publish, scattered);
}

/*
 * Has the budget room for a run of sparse blocks?  Perhaps once a free
 * range has given its memory back to make it.
 */
static bool window_sparse_room(struct vmcoh_window *w)
{
	struct page *give = NULL;
	bool room;

	xa_lock(&w->regions);
	room = window_make_room_locked(w, VMCOH_LOAD_RUN_MIN, &give);
	xa_unlock(&w->regions);
	if (give)
		put_page(give);
	return room;
}

/**
 * vmcoh_window_reserve - make sure @index's region has a range
 * @dev: the device, with a window
 * @index: a block about to be loaded
 * @scattered: the load is a scattered miss (vmcoh_load_scattered()): a
 *	       region that comes back takes a sparse range
 *
 * Before a load is sent, so that its answer can be published.  The range
 * may be reclaimed before it is; the load is then cancelled with it.  A
 * sparse range's load needs room in the budget for a run of blocks too;
 * they are charged as they are published.
 *
 * Return: 0; -ENOSPC if the pool has no free range, or no room (the worker
 * has been asked for one); -EBUSY if the index's page may still be written
 * through a pin (vmcoh_window_wait_unpinned()); -ENOMEM.
 */
int vmcoh_window_reserve(struct vmcoh_dev *dev, pgoff_t index,
			 bool scattered)
{
	struct vmcoh_window_range *range;

	range = window_get(dev, index, false, scattered);
	if (IS_ERR(range))
		return PTR_ERR(range);
	/* Descriptors are the pool's till it goes: ->sparse stays put. */
	if (range && range->sparse && !window_sparse_room(&dev->window)) {
		window_kick(dev);
		return -ENOSPC;
	}
	return range ? 0 : -ENOSPC;
}

/*
 * Readahead takes a range for the region after the reader's, and asks the
 * worker for one if none is free: in a pool of fewer ranges the range that
 * goes may be the reader's own, or the one it is about to read again.
 */
#define WINDOW_AHEAD_MIN_RANGES	4

/**
 * vmcoh_window_reads_ahead - may readahead take ranges of this window?
 * @dev: the device
 *
 * Return: true if it has a window of at least WINDOW_AHEAD_MIN_RANGES.
 */
bool vmcoh_window_reads_ahead(struct vmcoh_dev *dev)
{
	return vmcoh_window_enabled(dev) &&
	       dev->window.nr_ranges >= WINDOW_AHEAD_MIN_RANGES;
}

/**
 * vmcoh_window_want_range - readahead found no free range: ask for one
 * @dev: the device, with a window
 *
 * Readahead never waits for a range; the worker reclaims one for its next
 * try (backing.c), as it does for a fault that waits.
 */
void vmcoh_window_want_range(struct vmcoh_dev *dev)
{
	WRITE_ONCE(dev->window.ahead_wants, true);
	window_kick(dev);
}

/**
 * vmcoh_window_resident - is the region at @first wholly in the block map?
 * @dev: the device, with a window
 * @first: the region's first index
 *
 * For a 2 MiB mapping, which needs every block of the region, and they are
 * the pages of the region's range in order: one count, not 512 lookups.
 * The count never runs ahead of the block map, so a full one means every
 * block was there when it was read.  As with a lookup, the answer holds
 * only as long as the caller holds the region's entry lock, which the
 * invalidation of any of its blocks waits for before it frees them; and
 * so does the range, which stays the region's while it has blocks.
 *
 * Return: the range's first page if all its blocks are present, else NULL.
 */
struct page *vmcoh_window_resident(struct vmcoh_dev *dev, pgoff_t first)
{
	struct vmcoh_window *w = &dev->window;
	struct vmcoh_window_range *range;
	struct page *head = NULL;

	xa_lock(&w->regions);
	range = range_of(w, range_region(first));
	if (range && !range->sparse &&
	    atomic_read(&range->nr_present) == VMCOH_RANGE_PAGES)
		head = range->head;
	xa_unlock(&w->regions);
	return head;
}

/**
 * vmcoh_window_region_empty - has the region at @first no block in the map?
 * @dev: the device, with a window
 * @first: the region's first index
 *
 * A hint, for a 2 MiB fault that would load the region whole.
 *
 * Return: true if the region has no range, or no block in its range.
 */
bool vmcoh_window_region_empty(struct vmcoh_dev *dev, pgoff_t first)
{
	struct vmcoh_window_range *range;
	bool empty;

	rcu_read_lock();
	range = range_of(&dev->window, range_region(first));
	empty = !range || !atomic_read(&range->nr_present);
	rcu_read_unlock();
	return empty;
}

/**
 * vmcoh_window_touch - a block of @index's region was mapped or read
 * @dev: the device, with a window
 * @index: the block's index
 *
 * Marks the region's range referenced, which keeps an active range active
 * (see "Which range goes").  Lockless, and a store only when the mark is
 * not set yet: cheap enough for every fault.
 */
void vmcoh_window_touch(struct vmcoh_dev *dev, pgoff_t index)
{
	struct vmcoh_window_range *range;

	rcu_read_lock();
	range = range_of(&dev->window, range_region(index));
	if (range && !READ_ONCE(range->referenced))
		WRITE_ONCE(range->referenced, true);
	rcu_read_unlock();
}

/*
 * @stored of the @taken blocks window_get_batch() counted for @range went
 * into the block map: count them in, and give back the counts of the rest,
 * and perhaps the range.
 */
static void range_published(struct vmcoh_dev *dev,
			    struct vmcoh_window_range *range,
			    unsigned int taken, unsigned int stored)
{
	struct vmcoh_window *w = &dev->window;

	atomic_add(stored, &range->nr_present);
	atomic_long_add(stored, &dev->map.nr_blocks);
	vmcoh_count_add(dev, VMCOH_BLOCKS_ALLOCATED, stored);
	if (stored == taken)
		return;
	xa_lock(&w->regions);
	range->nr_blocks -= taken - stored;
	if (range_release_locked(w, range, NULL))
		window_wake(w);
	xa_unlock(&w->regions);
}

/* Give back @nr pages of sparse blocks to the budget. */
static void sparse_uncharge(struct vmcoh_window *w, unsigned long nr)
{
	if (!nr)
		return;
	xa_lock(&w->regions);
	w->pages_used -= nr;
	w->nr_sparse_pages -= nr;
	/* Room for a waiter, as a range given back is. */
	WRITE_ONCE(w->released, w->released + 1);
	xa_unlock(&w->regions);
	window_wake(w);
}

/*
 * Pages for sparse blocks, @pages[i] for each bit of @want, charged to the
 * budget as far as it has room, and allocated quickly: the caller may hold
 * entry locks, or claims of a load's.  Their contents are written when
 * they are published, as a range's are.  Return the bits that got one.
 */
static unsigned long sparse_pages_new(struct vmcoh_dev *dev,
				      unsigned long want, struct page **pages)
{
	struct vmcoh_window *w = &dev->window;
	unsigned long got = 0, fit, nr = hweight_long(want);
	struct page *give = NULL;
	unsigned int i;

	xa_lock(&w->regions);
	window_make_room_locked(w, nr, &give);
	fit = min(nr, window_room_locked(w));
	w->pages_used += fit;
	w->nr_sparse_pages += fit;
	xa_unlock(&w->regions);
	if (give)
		put_page(give);
	for_each_set_bit(i, &want, BITS_PER_LONG) {
		if (!fit)
			break;
		pages[i] = alloc_page(GFP_HIGHUSER | __GFP_NORETRY |
				      __GFP_NOWARN);
		if (!pages[i])
			break;
		got |= BIT(i);
		fit--;
	}
	sparse_uncharge(w, fit);
	return got;
}

/* Free the pages of the bits of @bits, sparse blocks never published. */
static void sparse_pages_put(struct vmcoh_dev *dev, unsigned long bits,
			     struct page **pages)
{
	unsigned int i;

	for_each_set_bit(i, &bits, BITS_PER_LONG)
		put_page(pages[i]);
	sparse_uncharge(&dev->window, hweight_long(bits));
}

/* vmcoh_window_publish() in a sparse range: a page of its own. */
static struct page *sparse_publish(struct vmcoh_dev *dev,
				   struct vmcoh_window_range *range,
				   pgoff_t index, struct page *src, bool *ours)
{
	struct page *page, *cur;

	if (!sparse_pages_new(dev, 1, &page)) {
		range_published(dev, range, 1, 0);
		return ERR_PTR(-ENOSPC);
	}
	cur = vmcoh_block_store(&dev->map, index, page, true, src, ours);
	if (!*ours)
		sparse_pages_put(dev, 1, &page);
	range_published(dev, range, 1, *ours);
	return *ours ? page : cur;
}

/**
 * vmcoh_window_publish - make the page of @index in its range back @index
 * @dev: the device, with a window
 * @index: page index
 * @src: the contents (a page from vmcoh_block_new()); NULL for zeros
 * @ours: set if @src went in; false if another block was there first
 *
 * As vmcoh_block_publish(), whose window half this is.
 *
 * Return: the block of @index; ERR_PTR(-ENOSPC) if the pool has no free
 * range, -EBUSY if the page may still be written through a pin, -ENXIO
 * beyond EOF, or -ENOMEM.
 */
struct page *vmcoh_window_publish(struct vmcoh_dev *dev, pgoff_t index,
				  struct page *src, bool *ours)
{
	struct vmcoh_window_range *range;
	struct page *slot, *cur;

	*ours = false;
	range = window_get(dev, index, true, false);
	if (IS_ERR_OR_NULL(range))
		return range ? ERR_CAST(range) : ERR_PTR(-ENOSPC);
	if (range->sparse)
		return sparse_publish(dev, range, index, src, ours);
	slot = range->head + (index & (VMCOH_RANGE_PAGES - 1));

	cur = vmcoh_block_store(&dev->map, index, slot, true, src, ours);
	/* Not ours: the count we took goes back, and perhaps the range. */
	range_published(dev, range, 1, *ours);
	return *ours ? slot : cur;
}

/*
 * The window half of vmcoh_blocks_publish(): vmcoh_window_publish() for
 * the bits of @want, indices @first + i of one region, from @srcs[i].
 * One range lookup and one block-map pass for the batch.
 */
static unsigned long window_publish_batch(struct vmcoh_dev *dev,
					  pgoff_t first, unsigned long want,
					  struct page *const *srcs)
{
	struct page *pages[BITS_PER_LONG];
	struct vmcoh_window_range *range;
	unsigned long got, ours;

	range = window_get_batch(dev, first, &want, true, false);
	if (IS_ERR_OR_NULL(range))
		return 0;
	if (range->sparse) {
		got = sparse_pages_new(dev, want, pages);
		ours = vmcoh_blocks_store_copies(&dev->map, first, got, NULL,
						 pages, srcs);
		sparse_pages_put(dev, got & ~ours, pages);
	} else {
		ours = vmcoh_blocks_store_copies(&dev->map, first, want,
						 range->head +
						 (first & (VMCOH_RANGE_PAGES - 1)),
						 NULL, srcs);
	}
	range_published(dev, range, hweight_long(want), hweight_long(ours));
	return ours;
}

/*
 * window_block_removed - @block, of @index, is out of the block map
 * @dev: the device, with a window
 * @index: its index
 * @block: its page
 * @list: the removal's list, freed by vmcoh_blocks_free()
 *
 * Called under blocks.xa_lock, with io_rwsem held exclusive: a range's
 * freeing bits belong to one invalidation at a time.  The range cannot go
 * while it has blocks, so the lockless lookup is stable.  Return true for
 * a sparse block, whose page the block map frees itself.
 */
static bool window_block_removed(struct vmcoh_dev *dev, pgoff_t index,
				 struct page *block,
				 struct vmcoh_block_list *list)
{
	struct vmcoh_window_range *range = range_of(&dev->window,
						    range_region(index));

	if (WARN_ON_ONCE(!range))
		return false;
	atomic_dec(&range->nr_present);
	/* Atomic: window_get() reads it under the window's lock only. */
	set_bit(index & (VMCOH_RANGE_PAGES - 1), range->freeing);
	if (!range->freeing_next) {
		range->freeing_next = list->ranges ?: range;
		list->ranges = range;
	}
	if (range->sparse)
		return true;	/* counted as the block map lists it */
	list->count++;
	return false;
}

/*
 * Free the blocks of @list's ranges: count them out, and give back ranges
 * left without any.  Their pages are not touched (see above).  Called
 * after the invalidation's unmap: a range still referenced beyond its
 * mappings now is pinned, and its freed pages are marked so.
 */
static void window_blocks_free(struct vmcoh_dev *dev,
			       struct vmcoh_block_list *list)
{
	struct vmcoh_window *w = &dev->window;
	struct vmcoh_window_range *range, *next;
	bool freed = false;
	unsigned int n;

	for (range = list->ranges; range; range = next) {
		next = range->freeing_next == range ? NULL :
						      range->freeing_next;
		range->freeing_next = NULL;
		xa_lock(&w->regions);
		n = bitmap_weight(range->freeing, VMCOH_RANGE_PAGES);
		if (range_pinned(range))
			bitmap_or(range->pinned, range->pinned, range->freeing,
				  VMCOH_RANGE_PAGES);
		bitmap_zero(range->freeing, VMCOH_RANGE_PAGES);
		if (range->sparse) {	/* their pages are freed already */
			w->pages_used -= n;
			w->nr_sparse_pages -= n;
			WRITE_ONCE(w->released, w->released + 1);
			freed = true;
		}
		atomic_long_sub(n, &dev->map.nr_blocks);
		vmcoh_count_add(dev, VMCOH_BLOCKS_FREED, n);
		range->nr_blocks -= n;
		freed |= range_release_locked(w, range, NULL);
		xa_unlock(&w->regions);
		cond_resched();
	}
	list->ranges = NULL;
	if (freed)
		window_wake(w);
}

/* The block map's blocks live in the ranges: what it calls, see vmcoh.h. */
static const struct vmcoh_block_ops window_block_ops = {
	.publish	= vmcoh_window_publish,
	.publish_batch	= window_publish_batch,
	.removed	= window_block_removed,
	.free		= window_blocks_free,
};

/* How often a task waiting for a free range asks the worker again. */
#define WINDOW_WAIT_KICK	HZ

static const enum vmcoh_counter reclaim_counters[] = {
	[VMCOH_RECLAIM_INLINE]	= VMCOH_RECLAIMS_INLINE,
	[VMCOH_RECLAIM_BACKGROUND]	= VMCOH_RECLAIMS_BACKGROUND,
	[VMCOH_RECLAIM_SHRINKER]	= VMCOH_RECLAIMS_SHRINKER,
	[VMCOH_RECLAIM_FAULT]	= VMCOH_RECLAIMS_FAULT,
};

/*
 * Every WINDOW_AGE_PERIOD-th pick, look at the oldest active range: demote
 * it unless it was referenced since it was last looked at, and then give
 * it a second chance at the tail.  Called with the window's lock held.
 */
static void reclaim_age(struct vmcoh_window *w)
	__must_hold(&w->regions.xa_lock)
{
	struct vmcoh_window_range *range;

	if (++w->picks % WINDOW_AGE_PERIOD)
		return;
	list_for_each_entry(range, &w->busy, lru) {
		if (!range->active)
			continue;
		if (READ_ONCE(range->referenced)) {
			WRITE_ONCE(range->referenced, false);
			list_move_tail(&range->lru, &w->busy);
		} else {
			range->active = false;
			w->nr_active--;
		}
		return;
	}
}

/*
 * Pick the range to reclaim, other than the one of @skip, and mark it: the
 * least recently used inactive one, else the least recently used active
 * one (see "Which range goes").  An empty idle range goes straight back to
 * the pool (*@released).  Only a served object can give blocks back: an
 * orphaned one could not load them again.
 */
static struct vmcoh_window_range *
reclaim_pick(struct vmcoh_dev *dev, pgoff_t skip, bool *released)
{
	struct vmcoh_window *w = &dev->window;
	bool served = vmcoh_served(dev);
	struct vmcoh_window_range *range, *victim = NULL, *active = NULL;

	*released = false;
	xa_lock(&w->regions);
	reclaim_age(w);
	list_for_each_entry(range, &w->busy, lru) {
		if (range->reclaiming || range->region == skip)
			continue;
		if (!range->nr_blocks) {
			if (range_release_locked(w, range, NULL)) {
				*released = true;
				victim = range;
				break;
			}
			continue;	/* pinned */
		}
		if (!served)
			continue;
		if (!range->active) {
			victim = range;
			break;
		}
		if (!active)
			active = range;
	}
	if (!victim && !*released && active) {
		victim = active;
		victim->active = false;
		w->nr_active--;
	}
	if (victim && !*released)
		victim->reclaiming = true;
	xa_unlock(&w->regions);
	return victim;
}

/*
 * Reclaim @victim, which reclaim_pick() marked, holding @blocks: a DROP of
 * its region, then back to the pool unless something still holds it.
 * Return whether it went back; *@err is the DROP's.
 */
static bool reclaim_range(struct vmcoh_dev *dev,
			  struct vmcoh_window_range *victim,
			  unsigned int blocks, int *err)
{
	struct vmcoh_window *w = &dev->window;
	pgoff_t first = victim->region << VMCOH_RANGE_ORDER;
	bool released;

	*err = vmcoh_drop_range(dev, first, first + VMCOH_RANGE_PAGES - 1,
				VMCOH_OP_RECLAIM);
	xa_lock(&w->regions);
	victim->reclaiming = false;
	released = range_release_locked(w, victim, window_shadow(blocks));
	if (!released)	/* pinned, or a STORE failed: try it last */
		list_move_tail(&victim->lru, &w->busy);
	xa_unlock(&w->regions);
	window_prune_shadows(w);
	return released;
}

/*
 * Reclaim one range, not that of @skip.  Return 0 if one went back to the
 * pool; -ENOSPC if none could; -EINTR on a fatal signal.
 */
static int window_reclaim_one(struct vmcoh_dev *dev, pgoff_t skip,
			      enum vmcoh_reclaim_why why)
{
	unsigned int tries = dev->window.nr_ranges;
	struct vmcoh_window_range *victim;
	unsigned int blocks;
	pgoff_t region;
	bool released;
	int err = 0;

	while (tries--) {
		victim = reclaim_pick(dev, skip, &released);
		if (!victim)
			return -ENOSPC;
		region = victim->region;
		blocks = READ_ONCE(victim->nr_blocks);
		if (released || reclaim_range(dev, victim, blocks, &err)) {
			trace_vmcoh_reclaim(region, blocks, why, 0);
			vmcoh_count(dev, reclaim_counters[why]);
			window_wake(&dev->window);
			return 0;
		}
		trace_vmcoh_reclaim(region, blocks, why, err ?: -EBUSY);
		vmcoh_count(dev, VMCOH_RECLAIMS_FAILED);
		if (err == -EINTR)
			return err;
	}
	return -ENOSPC;
}

/*
 * Reclaim a range of another region than @index's, for a caller that holds
 * nothing; if none can go, wait for one to come free.
 */
static int window_reclaim_or_wait(struct vmcoh_dev *dev, pgoff_t index,
				  enum vmcoh_reclaim_why why)
{
	int err = window_reclaim_one(dev, range_region(index), why);

	return err == -ENOSPC ? vmcoh_window_wait(dev) : err;
}

/**
 * vmcoh_window_reclaim_inline - read(2) or write(2) found the pool empty
 * @dev: the device, with a window
 * @index: the index the caller needs a range for
 *
 * Called holding no lock of vmcoh's.  Reclaims a range of another region,
 * or, if none can be, waits for one to come free.
 *
 * Return: 0 to try again; -ENOSPC; -EINTR on a fatal signal.
 */
int vmcoh_window_reclaim_inline(struct vmcoh_dev *dev, pgoff_t index)
{
	return window_reclaim_or_wait(dev, index, VMCOH_RECLAIM_INLINE);
}

/**
 * vmcoh_window_reclaim_fault - a fault found the pool empty, and let go
 * @dev: the device, with a window
 * @index: the index the fault needs a range for
 *
 * Called by a fault that let go of its entry lock and of mmap_lock or the
 * VMA lock, and will be retried: it holds nothing, as read(2) reclaiming
 * inline does.  Reclaims a range of another region, or, if none can be,
 * waits for one to come free.  It does not wait for a reclaim in flight
 * (the worker's, for readahead): that one's range goes to readahead or to
 * another task, and this fault needs its own.  The one task that receives
 * the server's requests waits instead, and is told -EDEADLK, as before: a
 * reclaim may need its answer to a STORE.
 *
 * Return: as vmcoh_window_reclaim_inline().
 */
int vmcoh_window_reclaim_fault(struct vmcoh_dev *dev, pgoff_t index)
{
	if (vmcoh_server_waits_on_itself(dev))
		return vmcoh_window_wait(dev);
	return window_reclaim_or_wait(dev, index, VMCOH_RECLAIM_FAULT);
}

/**
 * vmcoh_window_reclaim_in_fault - unsafe=reclaim_in_fault, the seed's bug
 * @dev: the device, with a window
 * @index: the index whose entry lock the caller, a fault, holds
 *
 * Return: as vmcoh_window_reclaim_inline(), if it returns.
 */
int vmcoh_window_reclaim_in_fault(struct vmcoh_dev *dev, pgoff_t index)
{
	return window_reclaim_one(dev, range_region(index), VMCOH_RECLAIM_INLINE);
}

/*
 * Make sure a free range has memory, allocating it hard for one that has
 * none, if the budget has room.  Called holding nothing.  Return 0, or
 * -ENOMEM.
 */
static int window_populate(struct vmcoh_window *w)
{
	struct vmcoh_window_range *range;
	struct page *head;
	bool populated;

	xa_lock(&w->regions);
	populated = w->nr_populated_free || !w->nr_free ||
		    window_room_locked(w) < VMCOH_RANGE_PAGES;
	xa_unlock(&w->regions);
	if (populated)
		return 0;
	head = range_alloc(true);
	if (!head)
		return -ENOMEM;
	xa_lock(&w->regions);
	list_for_each_entry(range, &w->free, lru) {
		if (window_room_locked(w) < VMCOH_RANGE_PAGES)
			break;
		if (!range->head) {
			range->head = head;
			head = NULL;
			w->nr_populated_free++;
			w->pages_used += VMCOH_RANGE_PAGES;
			break;
		}
	}
	xa_unlock(&w->regions);
	if (head)	/* another task gave one memory first */
		put_page(head);
	return 0;
}

/**
 * vmcoh_window_wait - wait for a free range
 * @dev: the device, with a window
 *
 * The caller holds no entry lock and not io_rwsem: the reclaim it waits
 * for takes them.  It gives up after load_timeout_ms without a range
 * given back, as a load would.  Any range given back ends the wait, even
 * if another task took it before we ran: waiting only for a free range
 * would let a fault that keeps losing that race time out while ranges go
 * round, and take SIGBUS from a window that never stopped working.
 *
 * A free range whose memory the shrinker gave back needs it again: if no
 * free range has any, the quick allocation of the caller's attempt failed,
 * and this one tries hard, holding nothing (issue 14, item 9c: returning
 * 0 for any free range would send the caller round again, failing the same
 * allocation for ever).
 *
 * Return: 0 once a range is free, with memory, or was given back since the
 * call (it may be gone again: retry); -ENOMEM if the free ranges have no
 * memory and none could be had; -ENOSPC on timeout, or at once for an
 * object without a server (none, or orphaned); -EDEADLK at once if current
 * alone receives the server's requests; -EINTR on a fatal signal.
 */
int vmcoh_window_wait(struct vmcoh_dev *dev)
{
	struct vmcoh_window *w = &dev->window;
	unsigned int ms = vmcoh_load_timeout(dev);
	long left = ms ? msecs_to_jiffies(ms) : MAX_SCHEDULE_TIMEOUT;
	unsigned long released = READ_ONCE(w->released);
	long slice, ret;

	/* Callers go round until this fails: let a killed one go. */
	if (fatal_signal_pending(current))
		return -EINTR;
	if (window_free_ranges(w))
		return window_populate(w);
	if (!vmcoh_served(dev))
		return -ENOSPC;
	/* The worker's reclaim may send STOREs only we would answer. */
	if (vmcoh_server_waits_on_itself(dev))
		return -EDEADLK;
	vmcoh_count(dev, VMCOH_RANGE_WAITS);
	atomic_inc(&w->waiters);
	do {
		/*
		 * Ask the worker, and ask again every WINDOW_WAIT_KICK: a
		 * range that was still referenced when its reclaim ended
		 * stays with its region, empty, and goes back to the pool
		 * only when a reclaim looks at it again; once every task
		 * that needs a range waits here, nothing else would.
		 */
		queue_work(system_unbound_wq, &w->work);
		slice = min_t(long, left, WINDOW_WAIT_KICK);
		ret = wait_event_killable_timeout(w->free_wait,
						  window_free_ranges(w) ||
						  READ_ONCE(w->released) !=
						  released, slice);
		if (left != MAX_SCHEDULE_TIMEOUT)
			left -= slice;
	} while (!ret && left);
	atomic_dec(&w->waiters);
	if (ret < 0)
		return -EINTR;
	if (!ret) {
		vmcoh_count(dev, VMCOH_RANGE_WAIT_TIMEOUTS);
		return -ENOSPC;
	}
	return 0;
}

/* How often a task waiting for a pin to go looks again: nothing tells us. */
#define WINDOW_PIN_POLL_MS	10
/* How long the task that alone serves waits, for what may be its STORE. */
#define WINDOW_PIN_SERVER_MS	200

/**
 * vmcoh_window_wait_unpinned - wait until the page of @index may back it
 * @dev: the device, with a window
 * @index: an index whose publication or reservation failed with -EBUSY
 *
 * The caller holds no entry lock and not io_rwsem.  A pin's holder does not
 * tell us when it lets go, so this looks again every WINDOW_PIN_POLL_MS,
 * for as long as the pin lasts: as truncation of a DAX file waits for a
 * pinned page.  The range may change hands meanwhile; the caller retries.
 *
 * Return: 0 to try again; -EINTR on a fatal signal; -EDEADLK after
 * WINDOW_PIN_SERVER_MS if current alone receives the server's requests,
 * since the reference may be a STORE in flight that only it would answer.
 */
int vmcoh_window_wait_unpinned(struct vmcoh_dev *dev, pgoff_t index)
{
	struct vmcoh_window *w = &dev->window;
	unsigned long since = jiffies;
	struct vmcoh_window_range *range;
	bool unpinned;

	vmcoh_count(dev, VMCOH_PIN_WAITS);
	for (;;) {
		xa_lock(&w->regions);
		range = range_of(w, range_region(index));
		unpinned = !range || range_slot_unpinned(range, index);
		xa_unlock(&w->regions);
		if (unpinned)
			return 0;
		if (vmcoh_server_waits_on_itself(dev) &&
		    time_after(jiffies, since +
			       msecs_to_jiffies(WINDOW_PIN_SERVER_MS)))
			return -EDEADLK;
		schedule_timeout_killable(msecs_to_jiffies(WINDOW_PIN_POLL_MS));
		if (fatal_signal_pending(current))
			return -EINTR;
	}
}

/**
 * vmcoh_window_wait_refused - wait for what the window's refusal said
 * @dev: the device, with a window
 * @index: the index it refused a block or a reservation for
 * @err: the refusal, vmcoh_window_refused()
 *
 * The caller holds no entry lock and not io_rwsem.  Return: as
 * vmcoh_window_wait_unpinned() for -EBUSY, as vmcoh_window_wait() else.
 */
int vmcoh_window_wait_refused(struct vmcoh_dev *dev, pgoff_t index, int err)
{
	return err == -EBUSY ? vmcoh_window_wait_unpinned(dev, index) :
			       vmcoh_window_wait(dev);
}

/* Free ranges whose memory the pool could give back, beyond the reserve. */
static unsigned long window_spare_ranges(struct vmcoh_window *w)
{
	unsigned int reserve = window_reserve_now(w);

	return w->nr_populated_free > reserve ?
	       w->nr_populated_free - reserve : 0;
}

/*
 * Give the memory of up to @max free ranges beyond the reserve back to the
 * page allocator; a region that takes one of them allocates it again.
 * Return how many were given back.
 */
static unsigned long window_give_back(struct vmcoh_window *w,
				      unsigned long max)
{
	struct vmcoh_window_range *range;
	struct page *heads[8];
	unsigned int i, n = 0;

	xa_lock(&w->regions);
	list_for_each_entry(range, &w->free, lru) {
		if (n == ARRAY_SIZE(heads) || n == max ||
		    !window_spare_ranges(w))
			break;
		if (!range->head)
			continue;
		heads[n++] = range->head;
		range->head = NULL;
		w->nr_populated_free--;
		w->pages_used -= VMCOH_RANGE_PAGES;
	}
	xa_unlock(&w->regions);
	for (i = 0; i < n; i++)
		put_page(heads[i]);
	return n;
}

/* The worker: refill the reserve, then reclaim what the shrinker asked. */
static void window_work(struct work_struct *work)
{
	struct vmcoh_dev *dev = container_of(work, struct vmcoh_dev,
					     window.work);
	struct vmcoh_window *w = &dev->window;
	enum vmcoh_reclaim_why why;

	while (vmcoh_served(dev) && window_wants_reclaim(w)) {
		why = READ_ONCE(w->shrink_target) ? VMCOH_RECLAIM_SHRINKER :
						    VMCOH_RECLAIM_BACKGROUND;
		if (window_reclaim_one(dev, ULONG_MAX, why))
			break;
		if (why == VMCOH_RECLAIM_SHRINKER) {
			xa_lock(&w->regions);
			if (w->shrink_target)
				WRITE_ONCE(w->shrink_target,
					   w->shrink_target - 1);
			xa_unlock(&w->regions);
			window_give_back(w, 1);
		}
		cond_resched();
	}
	WRITE_ONCE(w->shrink_target, 0);
	WRITE_ONCE(w->ahead_wants, false);
	/* Whatever happened, a waiter may now find a range, or give up. */
	window_wake(w);
}

static unsigned long window_shrink_count(struct shrinker *shrink,
					 struct shrink_control *sc)
{
	struct vmcoh_dev *dev = window_dev;
	struct vmcoh_window *w = &dev->window;
	unsigned long n;

	xa_lock(&w->regions);
	n = window_spare_ranges(w) * VMCOH_RANGE_PAGES;
	if (vmcoh_served(dev))
		n += (w->nr_ranges - w->nr_free) * VMCOH_RANGE_PAGES +
		     w->nr_sparse_pages;
	xa_unlock(&w->regions);
	return n ?: SHRINK_EMPTY;
}

/*
 * Give back free ranges beyond the reserve at once; ask the worker to
 * reclaim owned ones for the rest, and to give those back too.  Nothing
 * here waits: the task under memory pressure may hold an entry lock.
 */
static unsigned long window_shrink_scan(struct shrinker *shrink,
					struct shrink_control *sc)
{
	struct vmcoh_dev *dev = window_dev;
	struct vmcoh_window *w = &dev->window;
	unsigned long want = DIV_ROUND_UP(sc->nr_to_scan, VMCOH_RANGE_PAGES);
	unsigned long n = window_give_back(w, want);

	if (n < want && vmcoh_served(dev)) {
		xa_lock(&w->regions);
		WRITE_ONCE(w->shrink_target,
			   min_t(unsigned long, want - n,
				 w->nr_ranges - w->nr_free + w->nr_sparse));
		xa_unlock(&w->regions);
		window_kick(dev);
	}
	sc->nr_scanned = n * VMCOH_RANGE_PAGES;
	return n ? n * VMCOH_RANGE_PAGES : SHRINK_STOP;
}

/* Linux 6.7 allocates shrinkers; 6.1 registers one the caller owns. */
#ifdef VMCOH_HAVE_SHRINKER_ALLOC
static int window_shrinker_register(struct vmcoh_window *w)
{
	w->shrinker = shrinker_alloc(0, "vmcoh-window");
	if (!w->shrinker)
		return -ENOMEM;
	w->shrinker->count_objects = window_shrink_count;
	w->shrinker->scan_objects = window_shrink_scan;
	shrinker_register(w->shrinker);
	return 0;
}

static void window_shrinker_unregister(struct vmcoh_window *w)
{
	shrinker_free(w->shrinker);
}
#else
static int window_shrinker_register(struct vmcoh_window *w)
{
	int err;

	w->shrinker = kzalloc(sizeof(*w->shrinker), GFP_KERNEL);
	if (!w->shrinker)
		return -ENOMEM;
	w->shrinker->count_objects = window_shrink_count;
	w->shrinker->scan_objects = window_shrink_scan;
	w->shrinker->seeks = DEFAULT_SEEKS;
	err = register_shrinker(w->shrinker, "vmcoh-window");
	if (err)
		kfree(w->shrinker);
	return err;
}

static void window_shrinker_unregister(struct vmcoh_window *w)
{
	unregister_shrinker(w->shrinker);
	kfree(w->shrinker);
}
#endif

void vmcoh_window_read_stats(struct vmcoh_dev *dev,
			     struct vmcoh_window_stats *stats)
{
	struct vmcoh_window *w = &dev->window;

	memset(stats, 0, sizeof(*stats));
	xa_lock(&w->regions);
	stats->ranges = w->nr_ranges;
	stats->ranges_free = w->nr_free;
	stats->ranges_busy = w->nr_ranges - w->nr_free;
	stats->ranges_populated = w->nr_ranges - w->nr_free +
				  w->nr_populated_free;
	stats->sparse_regions = w->nr_sparse;
	stats->sparse_blocks = w->nr_sparse_pages;
	xa_unlock(&w->regions);
	stats->reserve = window_reserve_now(w);
	stats->reclaims_inline =
		vmcoh_counter_read(dev, VMCOH_RECLAIMS_INLINE);
	stats->reclaims_background =
		vmcoh_counter_read(dev, VMCOH_RECLAIMS_BACKGROUND);
	stats->reclaims_shrinker =
		vmcoh_counter_read(dev, VMCOH_RECLAIMS_SHRINKER);
	stats->reclaims_failed =
		vmcoh_counter_read(dev, VMCOH_RECLAIMS_FAILED);
	stats->reclaims_fault = vmcoh_counter_read(dev, VMCOH_RECLAIMS_FAULT);
	stats->range_waits = vmcoh_counter_read(dev, VMCOH_RANGE_WAITS);
	stats->range_wait_timeouts =
		vmcoh_counter_read(dev, VMCOH_RANGE_WAIT_TIMEOUTS);
	stats->pin_waits = vmcoh_counter_read(dev, VMCOH_PIN_WAITS);
	stats->pmd_maps = vmcoh_counter_read(dev, VMCOH_PMD_MAPS);
	stats->pmd_fallbacks = vmcoh_counter_read(dev, VMCOH_PMD_FALLBACKS);
	stats->pmd_downgrades = vmcoh_counter_read(dev, VMCOH_PMD_DOWNGRADES);
	stats->refaults = vmcoh_counter_read(dev, VMCOH_WINDOW_REFAULTS);
	stats->sparse_taken = vmcoh_counter_read(dev,
						 VMCOH_WINDOW_SPARSE_TAKEN);
}

/**
 * vmcoh_window_create - a pool of @nr_ranges ranges for @dev
 * @dev: the device
 * @nr_ranges: 0 for no window
 *
 * The pool alone: vmcoh_window_init() adds the shrinker (KUnit devices,
 * which are not /dev/vmcoh, do without).
 *
 * Return: 0, or -ENOMEM.
 */
int vmcoh_window_create(struct vmcoh_dev *dev, unsigned int nr_ranges)
{
	struct vmcoh_window *w = &dev->window;
	unsigned int i;

	xa_init(&w->regions);
	INIT_LIST_HEAD(&w->free);
	INIT_LIST_HEAD(&w->busy);
	INIT_LIST_HEAD(&w->sparse_free);
	init_waitqueue_head(&w->free_wait);
	INIT_WORK(&w->work, window_work);
	if (!nr_ranges)
		return 0;
	w->ranges = kcalloc(nr_ranges, sizeof(*w->ranges), GFP_KERNEL);
	if (!w->ranges)
		return -ENOMEM;
	for (i = 0; i < nr_ranges; i++) {
		struct vmcoh_window_range *range = &w->ranges[i];

		range->head = range_alloc(true);
		if (!range->head) {
			while (i--)
				put_page(w->ranges[i].head);
			kfree(w->ranges);
			return -ENOMEM;
		}
		list_add_tail(&range->lru, &w->free);
	}
	w->nr_ranges = nr_ranges;
	w->nr_free = nr_ranges;
	w->nr_pages = (unsigned long)nr_ranges * VMCOH_RANGE_PAGES;
	w->pages_used = w->nr_pages;
	dev->map.ops = &window_block_ops;
	w->nr_populated_free = nr_ranges;
	return 0;
}

/**
 * vmcoh_window_init - the pool of /dev/vmcoh, if window_mb > 0
 * @dev: the device
 *
 * Return: 0, -EINVAL for a bad window_mb, or -ENOMEM.
 */
int vmcoh_window_init(struct vmcoh_dev *dev)
{
	int err;

	if (window_mb % 2 || window_mb > VMCOH_WINDOW_MAX_MB) {
		pr_err("vmcoh: window_mb must be even and at most %u\n",
		       VMCOH_WINDOW_MAX_MB);
		return -EINVAL;
	}
	err = vmcoh_window_create(dev, window_mb / 2);
	if (err || !window_mb)
		return err;
	window_dev = dev;
	err = window_shrinker_register(&dev->window);
	if (err)
		vmcoh_window_destroy(dev);
	return err;
}

/* Before vmcoh_blockmap_destroy(): no reclaim from now on. */
void vmcoh_window_stop(struct vmcoh_dev *dev)
{
	struct vmcoh_window *w = &dev->window;

	if (!w->nr_ranges)
		return;
	if (w->shrinker)
		window_shrinker_unregister(w);
	w->shrinker = NULL;
	cancel_work_sync(&w->work);
}

/* After vmcoh_blockmap_destroy(): every range is back in the pool. */
void vmcoh_window_destroy(struct vmcoh_dev *dev)
{
	struct vmcoh_window *w = &dev->window;
	struct vmcoh_window_range *range, *next;
	unsigned int i;

	if (!w->nr_ranges)
		return;
	/* Every block is gone; a (compound) range may stay pinned. */
	list_splice_init(&w->busy, &w->sparse_free);
	list_for_each_entry_safe(range, next, &w->sparse_free, lru) {
		if (range->sparse)
			kfree(range);
	}
	for (i = 0; i < w->nr_ranges; i++) {
		/* A pin (a vmsplice'd page, say) may outlive us: not a leak. */
		if (w->ranges[i].head)
			put_page(w->ranges[i].head);
	}
	kfree(w->ranges);
	xa_destroy(&w->regions);
	w->nr_ranges = 0;
}
