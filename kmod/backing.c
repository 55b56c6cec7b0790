// SPDX-License-Identifier: GPL-2.0
/*
 * Backed objects: blocks that live in a userspace server and are loaded on
 * first access (wendelin.core's loadblk() from ZEO; the server's channel is
 * server.c).
 *
 * A load is a state of the index's entry, not a lock.  The task that finds
 * the block missing, under the entry lock, replaces the locked entry with a
 * pointer to a struct vmcoh_req (LOADING) and queues a LOAD request; from
 * then on nobody holds anything of vmcoh's for that index:
 *
 *   - every task that wants the index (faults, read(2), the starter too)
 *     finds the load in the entry, takes a reference and waits for it to
 *     end, then looks the index up again - so one LOAD is sent however many
 *     tasks fault on the block, and loads of different indices proceed in
 *     parallel and alongside other faults, I/O and invalidation;
 *   - the server's answer is installed by vmcoh_load_finish(), under an
 *     entry lock claimed from the load itself: the block is published only
 *     if the entry still points at the load, and only after it holds all
 *     the data, so no user address ever sees a half-loaded block;
 *   - invalidation never waits for a load: it removes the entry
 *     (LOADING_INVALIDATED, wendelin f49c11a3), so the answer, which may
 *     predate the change that caused the invalidation, is dropped, and the
 *     waiters load again.
 *
 * The server's INVALIDATE adds a step before those of invalidate.c: cancel
 * the loads in the range (vmcoh_entries_cancel_loads()), then change the
 * block map, then entries, page tables and blocks as usual.  An answer
 * installed before the first step is taken out of the block map by the
 * second; one that arrives after the first finds its entry gone; one being
 * installed meanwhile holds the entry lock, which the first step waits for.
 * Changing the block map first would let an answer land between the block
 * map and the entries, and survive.
 *
 * Dirty blocks (writeback.c) are the server's to discard: INVALIDATE drops
 * them with the rest, the server's copy being newer.
 *
 * Lock order: see vmcoh.h.  A task waits for a load holding no lock of
 * vmcoh's.  vmcoh_load_finish() takes an entry lock (without waiting: no
 * task can hold an entry that points at a load) and then blocks.xa_lock.
 */

#include <linux/mm.h>
#include <linux/module.h>
#include <linux/slab.h>

#include "hooks.h"
#include "trace.h"
#include "vmcoh.h"

unsigned int vmcoh_load_timeout_ms = 30000;
module_param_named(load_timeout_ms, vmcoh_load_timeout_ms, uint, 0644);
MODULE_PARM_DESC(load_timeout_ms,
		 "A load or store the server has not answered in this many ms fails: SIGBUS or -EIO (default 30000; 0 waits forever)");

static void req_release(struct kref *ref)
{
	struct vmcoh_req *req = container_of(ref, struct vmcoh_req, ref);
	unsigned int i;

	for (i = 0; req->copies && i < req->nr; i++) {
		if (req->copies[i])
			__free_page(req->copies[i]);
	}
	if (req->copies != &req->one_copy)
		kvfree(req->copies);
	kfree(req);
}

void vmcoh_req_put(struct vmcoh_req *req)
{
	kref_put(&req->ref, req_release);
}

static void load_get(struct vmcoh_req *load)
{
	vmcoh_req_get(load);
}

static int load_wait(struct vmcoh_req *load)
{
	return wait_for_completion_killable(&load->done);
}

/* What entry.c may do with the loads its entries point at. */
const struct vmcoh_entry_load_ops vmcoh_entry_loads = {
	.get	= load_get,
	.put	= vmcoh_req_put,
	.wait	= load_wait,
};

/**
 * vmcoh_req_new - a request for the server, not yet sent
 * @dev: the device
 * @index: the block it is about
 * @op: VMCOH_REQ_LOAD or VMCOH_REQ_STORE
 *
 * Return: the request, with the channel's reference and the caller's; or
 * NULL for want of memory.
 */
struct vmcoh_req *vmcoh_req_new(struct vmcoh_dev *dev, pgoff_t index, u32 op)
{
	struct vmcoh_req *req = kzalloc(sizeof(*req), GFP_KERNEL);

	if (!req)
		return NULL;
	kref_init(&req->ref);		/* the channel's */
	vmcoh_req_get(req);		/* the caller's */
	req->dev = dev;
	req->index = index;
	req->nr = 1;
	req->op = op;
	INIT_LIST_HEAD(&req->queued);
	init_completion(&req->done);
	return req;
}

/* End @req as the server answered it (@blocks: a LOAD's), or failed it. */
void vmcoh_req_finish(struct vmcoh_req *req, struct page **blocks, int err)
{
	if (req->op == VMCOH_REQ_LOAD)
		vmcoh_load_finish(req, blocks, err);
	else
		vmcoh_store_finish(req, err);
}

/*
 * The run a load of @index may take, @index's aligned VMCOH_LOAD_RUN_MIN
 * blocks (read-around) or, right after the previous run, twice that run
 * from @index on (readahead), or twice the resident blocks in a row that
 * end right before @index, if there are VMCOH_LOAD_RUN_MIN of them: a pass
 * that read them without missing, since the window kept them (context
 * readahead); or, @ahead, the region from @index (read ahead, or for a
 * 2 MiB fault); within @index's region, below EOF, and for an object
 * without a window within what max_mb leaves.  Only for a server that
 * takes runs.  A guess, made without locks: the entries decide what the
 * load takes (vmcoh_entry_start_load()).  Return whether it follows a
 * sequential pass (not read-around).
 */
static bool load_run(struct vmcoh_dev *dev, pgoff_t index, bool ahead,
		     pgoff_t *first, pgoff_t *last)
{
	struct vmcoh_backing *backing = &dev->backing;
	unsigned int nr = READ_ONCE(backing->ra_blocks);
	pgoff_t region = index & ~(pgoff_t)(VMCOH_LOAD_RUN_MAX - 1);
	pgoff_t lo, hi, size = vmcoh_size_pages(dev);
	unsigned long history;
	bool seq = true;
	long room;

	*first = *last = index;
	if (!READ_ONCE(backing->regions))
		return false;
	if (ahead) {
		nr = VMCOH_LOAD_RUN_MAX;
		lo = index;
	} else if (index == READ_ONCE(backing->ra_next) && nr) {
		nr = min_t(unsigned int, 2 * nr, VMCOH_LOAD_RUN_MAX);
		lo = index;
	} else {
		history = vmcoh_blocks_history(&dev->map, index,
					       VMCOH_LOAD_RUN_MAX);
		if (history >= VMCOH_LOAD_RUN_MIN) {
			nr = min_t(unsigned long, 2 * history,
				   VMCOH_LOAD_RUN_MAX);
			lo = index;
		} else {
			nr = VMCOH_LOAD_RUN_MIN;
			lo = ALIGN_DOWN(index, nr);
			seq = false;
		}
	}
	hi = min3(lo + nr - 1, region + VMCOH_LOAD_RUN_MAX - 1, size - 1);
	if (!vmcoh_window_enabled(dev)) {
		room = dev->map.max_blocks -
		       atomic_long_read(&dev->map.nr_blocks);
		if (room <= 1)
			return false;
		hi = min_t(pgoff_t, hi, index + room - 1);
	}
	/* A DROP in progress: the index alone, whose entry lock says so. */
	if (vmcoh_drop_pending(dev, lo, hi))
		return false;
	vmcoh_blocks_hole(&dev->map, index, &lo, &hi);
	*first = lo;
	*last = hi;
	WRITE_ONCE(backing->ra_blocks, nr);
	return seq;
}

/**
 * vmcoh_load_scattered - would a load of @index be a read-around miss?
 * @dev: the device, backed
 * @index: a block about to be loaded
 *
 * A guess without locks, as load_run()'s: neither right after the previous
 * run nor after a run of resident blocks, so the load takes the aligned
 * VMCOH_LOAD_RUN_MIN blocks around @index.  The window gives a region
 * that comes back through such misses pages of its own rather than a
 * 2 MiB range (window.c, "Sparse regions").
 *
 * Return: true for a scattered miss; false for a sequential pass, a miss
 * at a region's first block, or a server that takes blocks one at a time.
 */
bool vmcoh_load_scattered(struct vmcoh_dev *dev, pgoff_t index)
{
	struct vmcoh_backing *backing = &dev->backing;

	/* A region's first block starts a pass as often as not. */
	if (!READ_ONCE(backing->regions) ||
	    !(index & (VMCOH_LOAD_RUN_MAX - 1)))
		return false;
	if (index == READ_ONCE(backing->ra_next) &&
	    READ_ONCE(backing->ra_blocks))
		return false;
	return vmcoh_blocks_history(&dev->map, index, VMCOH_LOAD_RUN_MIN) <
	       VMCOH_LOAD_RUN_MIN;
}

static void readahead_from(struct vmcoh_dev *dev, pgoff_t index);

/* What a load takes: a run after a miss, a region read ahead, a region. */
enum load_how { LOAD_MISS, LOAD_AHEAD, LOAD_REGION };

static struct vmcoh_req *load_start(struct vmcoh_dev *dev, pgoff_t index,
				    unsigned long flags, enum load_how how)
{
	struct vmcoh_req *load = vmcoh_req_new(dev, index, VMCOH_REQ_LOAD);
	bool follows = index == READ_ONCE(dev->backing.ra_next);
	pgoff_t first, last;
	bool seq;
	int err;

	if (!load)
		return ERR_PTR(-ENOMEM);
	/*
	 * A load entry tracks no PTE, and invalidation unmaps only where it
	 * removed an entry that does.  If this one may still back a PTE of
	 * a block that is gone - another thread of the mm mapped it, and an
	 * invalidation took the block and now waits for our lock - that PTE
	 * must go before the entry stops tracking it, or it outlives every
	 * invalidation to come.  The rest of a run had no entry: no PTE.
	 */
	if (!(flags & VMCOH_ENTRY_EMPTY)) {
		unmap_mapping_pages(dev->mapping, index, 1, false);
		vmcoh_count(dev, VMCOH_RANGED_UNMAPS);
	}

	/* In the entries before the server can see it, so it can answer. */
	seq = load_run(dev, index, how != LOAD_MISS, &first, &last);
	vmcoh_entry_start_load(&dev->entries, index, load, &first, &last);
	load->index = first;
	load->nr = last - first + 1;
	if (READ_ONCE(dev->backing.regions))
		WRITE_ONCE(dev->backing.ra_next, last + 1);
	err = vmcoh_server_submit(dev, load);
	if (err) {
		vmcoh_load_finish(load, NULL, err);
		return load;
	}
	if (how == LOAD_AHEAD)
		vmcoh_count(dev, VMCOH_LOADS_AHEAD);
	/* A sequential pass loads the rest of its region: the next too. */
	else if ((how == LOAD_MISS ? seq : follows) &&
		 vmcoh_window_reads_ahead(dev) &&
		 !((last + 1) & (VMCOH_LOAD_RUN_MAX - 1)))
		readahead_from(dev, index);
	return load;
}

/**
 * vmcoh_load_start - load the block of @index from the server
 * @dev: the device, backed
 * @index: the index whose entry lock the caller holds, its block missing
 * @flags: the entry's value before the caller locked it
 *
 * On success the caller's entry lock has become the load: the caller holds
 * no entry lock, and must pass the load to vmcoh_req_wait().  A server
 * that takes runs is asked for the blocks around @index too (load_run()),
 * and, in a sequential pass, for the next region (readahead_from()).
 * If the request cannot be sent (no server), the load has already failed,
 * and the wait says so.
 *
 * Return: the load, with a reference for the caller; or ERR_PTR(-ENOMEM),
 * and the caller still holds its entry lock.
 */
struct vmcoh_req *vmcoh_load_start(struct vmcoh_dev *dev, pgoff_t index,
				   unsigned long flags)
{
	return load_start(dev, index, flags, LOAD_MISS);
}

/**
 * vmcoh_load_start_region - load the region from @first, for a 2 MiB fault
 * @dev: the device, backed by a server that takes runs, with a window
 * @first: a region's first index, whose entry lock the caller holds, its
 *	   block missing
 * @flags: the entry's value before the caller locked it
 *
 * As vmcoh_load_start(), but the run is the region from @first (up to a
 * block resident or loading already), as fuse DAX maps 2 MiB per
 * FUSE_SETUPMAPPING; right after the previous run, the next region is read
 * ahead too.
 */
struct vmcoh_req *vmcoh_load_start_region(struct vmcoh_dev *dev,
					  pgoff_t first, unsigned long flags)
{
	return load_start(dev, first, flags, LOAD_REGION);
}

/*
 * Async readahead, as the page cache's (mm/readahead.c, PG_readahead):
 * with a window of at least 4 ranges (vmcoh_window_reads_ahead()), a
 * sequential pass that loads the rest of a region also sends the LOAD of
 * the next region, and marks that region's first block (backing.ra_async);
 * when the pass gets there - a fault, or read(2) - the region after it is
 * sent, and marked.  So the server answers a region while the reader goes
 * through the one before.  Fault-around leaves the marked block to ->fault
 * (fault.c), as filemap_map_pages() leaves a PG_readahead folio to
 * filemap_fault().
 *
 * Nothing waits for these loads, and sending one waits for nothing: the
 * region's first entry is only trylocked, and must have been absent (no
 * PTE to take care of); a range is taken only if one is free - if none is,
 * the worker is asked for one - and a drop in progress is left alone.  If
 * it cannot be sent now, the mark moves to the reader's next fault-around
 * window, to try again there or at the next region.  The entry protocol
 * is the same as for any load: whoever wants a block of the region waits
 * for it, and an invalidation of any part cancels that part.
 */

/*
 * Send the LOAD of the region from @index, its first block, if it is not
 * resident or loading already.  Holding no entry lock.  Return false if it
 * should be tried again: the window had no range for it.
 */
static bool readahead_region(struct vmcoh_dev *dev, pgoff_t index)
{
	struct vmcoh_req *load;
	unsigned long flags;
	int err;

	if (index >= vmcoh_size_pages(dev) ||
	    vmcoh_block_lookup(&dev->map, index))
		return true;
	/* An entry: the region is loading, or mapped, already. */
	if (!vmcoh_entry_trylock_absent(&dev->entries, index))
		return true;
	flags = VMCOH_ENTRY_EMPTY;
	if (vmcoh_drop_pending(dev, index, index) ||
	    vmcoh_block_lookup(&dev->map, index)) {
		vmcoh_entry_unlock(&dev->entries, index, flags);
		return true;
	}
	err = vmcoh_window_reserve(dev, index, false);
	if (err) {
		vmcoh_entry_unlock(&dev->entries, index, flags);
		if (err == -ENOSPC)
			vmcoh_window_want_range(dev);
		return false;
	}
	load = load_start(dev, index, flags, LOAD_AHEAD);
	if (IS_ERR(load)) {
		vmcoh_entry_unlock(&dev->entries, index, flags);
		return false;
	}
	vmcoh_req_put(load);
	WRITE_ONCE(dev->backing.ra_async, index);
	return true;
}

/* The reader is at @index: send the region after @index's. */
static void readahead_from(struct vmcoh_dev *dev, pgoff_t index)
{
	pgoff_t next = ALIGN_DOWN(index, VMCOH_LOAD_RUN_MAX) +
		       VMCOH_LOAD_RUN_MAX;
	pgoff_t retry = ALIGN_DOWN(index, VMCOH_LOAD_RUN_MIN) +
			VMCOH_LOAD_RUN_MIN;

	if (!readahead_region(dev, next))
		WRITE_ONCE(dev->backing.ra_async, retry);
}

/**
 * vmcoh_readahead - a fault or read(2) of a backed object is at @index
 * @dev: the device, backed
 * @index: the block it maps or reads
 *
 * If @index is at the mark (see above) or past it, by less than two
 * regions, the region after @index's is sent ahead of the reader: by one
 * task, which takes the mark.  Past it: a 2 MiB fault maps a region at
 * once, and a reader that skipped the marked block still reads on.
 * Holding no entry lock; cheap when @index is not marked.
 */
void vmcoh_readahead(struct vmcoh_dev *dev, pgoff_t index)
{
	struct vmcoh_backing *backing = &dev->backing;
	pgoff_t mark = READ_ONCE(backing->ra_async);

	if (likely(index < mark || index - mark >= 2 * VMCOH_LOAD_RUN_MAX))
		return;
	if (cmpxchg(&backing->ra_async, mark, ULONG_MAX) != mark ||
	    !vmcoh_served(dev))
		return;
	readahead_from(dev, index);
}

/* Did the load @req, ended, fail for @index? */
static int req_status(struct vmcoh_req *req, pgoff_t index)
{
	if (req->op != VMCOH_REQ_LOAD)
		return req->status;
	if (WARN_ON_ONCE(index - req->index >= req->nr))
		return -EIO;
	return test_bit(index - req->index, req->failed) ? -EIO : 0;
}

/**
 * vmcoh_req_wait - wait for @req to end, and drop the caller's reference
 * @dev: the device
 * @req: from vmcoh_load_start(), vmcoh_entry_grab() or writeback
 * @index: for a load, the index the caller wants (one of its run)
 *
 * A request that outlives load_timeout_ms is failed for every waiter.
 *
 * Return: for a load, 0 if the caller should look @index up again (the
 * block came in, or the load of @index was invalidated and must be
 * redone); for a store, 0 if the server kept it.  -EIO if it failed;
 * -EINTR on a fatal signal; -EDEADLK at once if current is the one task
 * that receives the server's requests (vmcoh_server_waits_on_itself()).
 */
int vmcoh_req_wait(struct vmcoh_dev *dev, struct vmcoh_req *req,
		   pgoff_t index)
{
	unsigned int ms = vmcoh_load_timeout(dev);
	long timeout = ms ? msecs_to_jiffies(ms) : MAX_SCHEDULE_TIMEOUT;
	long left;
	int ret;

	if (req->op == VMCOH_REQ_LOAD)
		vmcoh_count(dev, VMCOH_LOAD_WAITS);
	if (unlikely(!completion_done(&req->done) &&
		     vmcoh_server_waits_on_itself(dev))) {
		/* Nobody else would receive it: fail it now, not at timeout. */
		vmcoh_server_cancel(dev, req, -EDEADLK);
		wait_for_completion(&req->done);	/* imminent, as below */
		ret = req_status(req, index) ? -EDEADLK : 0;
		vmcoh_req_put(req);
		return ret;
	}
	left = wait_for_completion_killable_timeout(&req->done, timeout);
	if (!left) {
		vmcoh_server_cancel(dev, req, -ETIMEDOUT);
		/* Ours or not, the end of the request is now imminent. */
		left = wait_for_completion_killable(&req->done) ? -EINTR : 1;
	}
	ret = left < 0 ? -EINTR : req_status(req, index);
	vmcoh_req_put(req);
	return ret;
}

/*
 * End the load of @index, one block of @load's run, with @block (NULL if
 * @err), which is freed unless it went in; a window's answers go in by
 * load_finish_batch().  Return whether the index still wanted it: its
 * entry was still the load's.
 */
static bool load_finish_one(struct vmcoh_req *load, pgoff_t index,
			    struct page *block, int err)
{
	struct vmcoh_dev *dev = load->dev;
	bool wanted, ours;

	if (err) {
		wanted = vmcoh_entry_drop_load(&dev->entries, index, load);
	} else {
		wanted = vmcoh_entry_claim_load(&dev->entries, index, load);
		/* unsafe=load_after_invalidate: the stale answer goes in. */
		if (wanted ||
		    vmcoh_unsafe(VMCOH_UNSAFE_LOAD_AFTER_INVALIDATE)) {
			/*
			 * Beyond a new EOF it fails (-ENXIO), and the waiters
			 * find the index gone.  Nobody else publishes blocks
			 * of a backed object, but another load of the index
			 * may have, if a run's lockless look missed its block
			 * (vmcoh_blocks_hole()): ours then goes.
			 */
			vmcoh_block_publish(dev, index, block, &ours);
			if (ours) {
				block = NULL;	/* it went in itself */
				vmcoh_count(dev, VMCOH_LOADS_PUBLISHED);
			}
		}
		if (wanted)
			vmcoh_entry_unlock(&dev->entries, index,
					   VMCOH_ENTRY_EMPTY);
	}
	if (!wanted)
		vmcoh_count(dev, VMCOH_LOADS_INVALIDATED);
	else if (err)
		vmcoh_count(dev, VMCOH_LOADS_FAILED);
	if (block)
		vmcoh_block_free(dev, block);
	return wanted;
}

/*
 * How many blocks of a run go into a window together: one entry-lock
 * pass each way, one range lookup and one block-map pass for the batch,
 * where each block took them all.  The copies are made under the block
 * map's lock, where each index is seen to be a hole (write(2) may fill
 * one without an entry lock), so the batch also bounds how long that is
 * held: 128 KiB of copying.  On 6.12 under TCG, batches of 16 and 64 read
 * a window twice its size 22% and 27% faster than one block at a time.
 */
#define LOAD_PUBLISH_BATCH	32

/*
 * load_finish_one() for a batch of the run at @off: the blocks @blocks[i]
 * (NULL: none to free) of the indices whose entries are still the load's
 * are copied into the window together.
 */
static void load_finish_batch(struct vmcoh_req *load, unsigned int off,
			      unsigned int nr, struct page **blocks,
			      bool owned)
{
	struct vmcoh_dev *dev = load->dev;
	pgoff_t first = load->index + off;
	unsigned long claimed, publish, ours = 0;
	unsigned int i;

	claimed = vmcoh_entries_claim_loads(&dev->entries, first, nr, load);
	/* unsafe=load_after_invalidate: the stale answers go in too. */
	publish = vmcoh_unsafe(VMCOH_UNSAFE_LOAD_AFTER_INVALIDATE) ?
		  BITMAP_LAST_WORD_MASK(nr) : claimed;
	if (publish)
		ours = vmcoh_blocks_publish(dev, first, publish, blocks + off);
	/*
	 * Waiters of a block that did not go in (see load_finish_one()) load
	 * again, as after an invalidation.
	 */
	if (claimed)
		vmcoh_entries_unlock(&dev->entries, first, claimed, NULL);
	vmcoh_count_add(dev, VMCOH_LOADS_PUBLISHED, hweight_long(ours));
	vmcoh_count_add(dev, VMCOH_LOADS_INVALIDATED,
			nr - hweight_long(claimed));
	if (owned) {
		for (i = 0; i < nr; i++)
			vmcoh_block_free(dev, blocks[off + i]);
	}
}

static void load_finish(struct vmcoh_req *load, struct page **blocks,
			bool owned, int err)
{
	unsigned int i, n;

	/* Into a window, in batches. */
	if (!err && vmcoh_window_enabled(load->dev)) {
		for (i = 0; i < load->nr; i += n) {
			n = min_t(unsigned int, load->nr - i,
				  LOAD_PUBLISH_BATCH);
			load_finish_batch(load, i, n, blocks, owned);
			cond_resched();
		}
		goto done;
	}
	for (i = 0; i < load->nr; i++) {
		if (load_finish_one(load, load->index + i,
				    err ? NULL : blocks[i], err) && err)
			__set_bit(i, load->failed);
		cond_resched();
	}
done:
	/* An invalidated load's waiters load again; they need not fail. */
	load->status = bitmap_empty(load->failed, load->nr) ? 0 : -EIO;
	trace_vmcoh_req_done(load);
	complete_all(&load->done);
	vmcoh_req_put(load);
}

/**
 * vmcoh_load_finish - end @load, and drop the request's reference
 * @load: a load the caller took out of the server's hands (answered,
 *	  cancelled, or never sent)
 * @blocks: on success, @load->nr blocks from vmcoh_block_alloc() with the
 *	    contents of its run, each of which goes in or is freed
 * @err: 0, or why the load failed
 *
 * Each block becomes resident only if its index's entry still points at
 * the load: an invalidation of part of the run discards that part.
 */
void vmcoh_load_finish(struct vmcoh_req *load, struct page **blocks, int err)
{
	load_finish(load, blocks, true, err);
}

/**
 * vmcoh_load_finish_copy - end @load with the contents of @pages
 * @load: a load the caller took out of the server's hands, of an object
 *	  with a window
 * @pages: @load->nr pages with the contents of its run, which stay the
 *	   caller's: the server's own memory, pinned by REPLY
 *
 * As vmcoh_load_finish(), but each page's contents are copied into the
 * window's page of its index as it is published, the one copy a block of
 * the run then costs.
 */
void vmcoh_load_finish_copy(struct vmcoh_req *load, struct page **pages)
{
	/* Without a window the pages themselves would go in. */
	if (WARN_ON_ONCE(!vmcoh_window_enabled(load->dev)))
		load_finish(load, NULL, true, -EIO);
	else
		load_finish(load, pages, false, 0);
}

/**
 * vmcoh_load_block - make sure the block of @index is resident or coming
 * @dev: the device, backed
 * @index: a page index below EOF
 * @loadp: returns the load to wait for
 *
 * For read(2) and write(2), which hold io_rwsem and must drop it before
 * they wait (the server may need it to INVALIDATE).
 *
 * Return: 0 if the block is resident now; VMCOH_LOADING, with *@loadp
 * to pass to vmcoh_req_wait(); -ENOSPC if the window has no range for it;
 * or -ENOMEM.
 */
int vmcoh_load_block(struct vmcoh_dev *dev, pgoff_t index,
		     struct vmcoh_req **loadp)
{
	struct vmcoh_req *load;
	void *entry;
	int ret;

	ret = vmcoh_entry_grab(dev, index, &entry);
	if (ret == VMCOH_LOADING)
		*loadp = entry;
	if (ret)
		return ret;
	if (vmcoh_block_lookup(&dev->map, index)) {
		vmcoh_entry_unlock(&dev->entries, index, xa_to_value(entry));
		return 0;
	}
	/* The caller reclaims a range, holding nothing, and comes back. */
	if (vmcoh_window_enabled(dev)) {
		ret = vmcoh_window_reserve(dev, index,
					   vmcoh_load_scattered(dev, index));
		if (ret) {
			vmcoh_entry_unlock(&dev->entries, index,
					   xa_to_value(entry));
			return ret;
		}
	}
	load = vmcoh_load_start(dev, index, xa_to_value(entry));
	if (IS_ERR(load)) {
		vmcoh_entry_unlock(&dev->entries, index, xa_to_value(entry));
		return PTR_ERR(load);
	}
	*loadp = load;
	return VMCOH_LOADING;
}

/*
 * INVALIDATE and DETACH; see the top of this file for the order.  With
 * @keep_dirty, nothing is invalidated if a block is dirty once the loads
 * are cancelled - by then no store that found the server writable is still
 * marking its block (they hold entry locks, which the cancel waits for).
 * Return: false if it kept the blocks.
 */
static bool backing_invalidate(struct vmcoh_dev *dev, pgoff_t first,
			       pgoff_t last, bool keep_dirty)
{
	struct vmcoh_block_list list = { };

	lockdep_assert_held_write(&dev->io_rwsem);
	vmcoh_count(dev, VMCOH_SERVER_INVALIDATIONS);
	vmcoh_entries_cancel_loads(dev, first, last);
	if (keep_dirty && atomic_long_read(&dev->map.nr_dirty))
		return false;
	vmcoh_blocks_remove(dev, first, last, &list);
	vmcoh_invalidate(dev, first, last, VMCOH_OP_SERVER, &list);
	return true;
}

/**
 * vmcoh_backing_invalidate - the server's copy of a range changed
 * @dev: the device
 * @offset: page-aligned start
 * @len: page-aligned length, non-zero; clipped at EOF
 *
 * When this returns, no mapping, read(2) or later load shows what the range
 * held before the call.  Loads in flight are not waited for.
 *
 * Return: 0.
 */
int vmcoh_backing_invalidate(struct vmcoh_dev *dev, loff_t offset, loff_t len)
{
	loff_t end;

	down_write(&dev->io_rwsem);
	end = min(offset + len, vmcoh_size(dev));
	if (offset < end)
		backing_invalidate(dev, offset >> PAGE_SHIFT,
				   (end >> PAGE_SHIFT) - 1, false);
	up_write(&dev->io_rwsem);
	return 0;
}

/*
 * ATTACH and DETACH, with io_rwsem held: drop every resident block, unless
 * one is dirty.  Return: false if the blocks were kept.
 */
bool vmcoh_backing_drop_all(struct vmcoh_dev *dev)
{
	return backing_invalidate(dev, 0, ULONG_MAX, true);
}
