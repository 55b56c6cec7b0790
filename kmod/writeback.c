// SPDX-License-Identifier: GPL-2.0
/*
 * Dirty blocks of a backed object: fsync's STOREs, and the server's DROP.
 *
 * Dirty tracking.  A block is dirty when its contents are newer than the
 * server's copy.  write(2) marks it under io_rwsem exclusive once it has
 * copied; a store through a shared mapping marks it in ->page_mkwrite under
 * the entry lock, before the core makes the PTE writable (write
 * notification: every PTE is installed read-only first).  The mark lives in
 * the block map (VMCOH_BLOCK_DIRTY), so it outlives the index's entry.
 *
 * Writeback (fsync, and the first half of a DROP) sends the dirty blocks to
 * the server in STOREs: one per block, or, for a server that takes runs
 * (VMCOH_ATTACH_STORE_RUNS), one per run of dirty blocks in a row within a
 * region.  For each run, under io_rwsem shared (no write(2)):
 *
 *   1. clear each block's DIRTY mark under its entry lock (no
 *      ->page_mkwrite), and take a reference to the block;
 *   2. unmap the run, once, which write-protects it again: the next store
 *      through a mapping must pass ->page_mkwrite and mark it again;
 *   3. copy the blocks into the STORE.
 *
 * Then io_rwsem is dropped and the STORE is sent and waited for, so stores
 * to the blocks go on meanwhile: they dirty them again, and the next
 * writeback sends them.  A store through a PTE that was writable before
 * step 2 is in the copy; any later one faults, and ->page_mkwrite marks its
 * block again - as it does for a store between steps 1 and 2, whose PTE
 * step 2 then removes.  A STORE that fails marks its blocks dirty again,
 * those still the blocks of their indices.  wb_mutex makes writebacks take
 * turns: one that finds a block clean must not report it safe while the
 * STORE that cleaned it is unanswered, and the STOREs of a block reach the
 * server in the order of their copies.
 *
 * DROP gives up the range, as an OCFS2 node gives up its cluster lock
 * (../shared/seeds/lkml-2005-ocfs2-page-lock-ordering.txt):
 *
 *   1. publish the range as dropping.  A fault, read(2) or write(2) that
 *      finds its index in it - under its entry lock or io_rwsem - lets go
 *      of that lock, waits for the drop to end, and starts over, loading
 *      the block again; ->page_mkwrite cannot dirty a block in it;
 *   2. write the range back;
 *   3. with io_rwsem exclusive, cancel the range's loads, which waits for
 *      each locked entry: a store that missed step 1 has marked its block
 *      by now.  If a block is dirty, back to 2 (there are few: none can
 *      start after step 1);
 *   4. invalidate: blocks out of the map, entries, one ranged unmap, free;
 *   5. end the drop, wake its waiters, and return - the acknowledgment.
 *
 * Steps 2 and 3 wait for entry locks and io_rwsem, so no task may wait for
 * the drop holding either.  That is the seed's inversion: OCFS2's
 * invalidation, holding the DLM lock, waits for page locks, whose holders
 * wait for the DLM lock.  unsafe=drop_under_entry_lock makes a fault wait
 * for the drop with its entry lock held, and deadlocks the same way;
 * unsafe=drop_skips_writeback invalidates without steps 2 and 3, and loses
 * what was written.
 *
 * Lock order: see vmcoh.h.  drop_mutex -> wb_mutex -> io_rwsem -> entry
 * lock -> i_mmap_rwsem; the drop's range is under inflight.xa_lock.  The
 * window's reclaim of a range (window.c) is a drop too, by the kernel.  STOREs
 * are waited for holding only the mutexes: the server may fault, read(2)
 * and INVALIDATE meanwhile, but must not fsync, nor touch a range it drops.
 */

#include <linux/highmem.h>
#include <linux/mm.h>

#include "hooks.h"
#include "trace.h"
#include "vmcoh.h"

/*
 * What a writeback has in flight at once: STOREs, and blocks copied into
 * them (2 MiB of copies).
 */
#define WB_BATCH	16
#define WB_BLOCKS	VMCOH_RANGE_PAGES

/**
 * vmcoh_store_finish - end @store, and drop the channel's reference
 * @store: a STORE the caller took out of the server's hands
 * @err: 0 if the server kept it, else why not
 */
void vmcoh_store_finish(struct vmcoh_req *store, int err)
{
	struct vmcoh_dev *dev = store->dev;
	unsigned int i;

	if (err)
		vmcoh_count(dev, VMCOH_STORES_FAILED);
	for (i = 0; i < store->nr; i++) {
		/* Not kept: dirty again, unless an invalidation took it. */
		if (err)
			vmcoh_block_mark_dirty(dev, store->index + i,
					       store->blocks[i]);
		/*
		 * The blocks are let go of before the writeback sees the end,
		 * not with the last reference to the request: a window's
		 * reclaim gives its range back right after the writeback, only
		 * if no page of it is referenced (window.c).
		 */
		put_page(store->blocks[i]);
		store->blocks[i] = NULL;
	}
	store->status = err ? -EIO : 0;
	trace_vmcoh_req_done(store);
	complete_all(&store->done);
	vmcoh_req_put(store);
}

/*
 * A STORE of up to @max blocks from @index, with room for their copies and
 * references; NULL for want of memory.
 */
static struct vmcoh_req *store_new(struct vmcoh_dev *dev, pgoff_t index,
				   unsigned int max)
{
	struct vmcoh_req *store = vmcoh_req_new(dev, index, VMCOH_REQ_STORE);

	if (!store)
		return NULL;
	store->nr = 0;
	if (max == 1) {
		store->copies = &store->one_copy;
		store->blocks = &store->one_block;
		return store;
	}
	store->copies = kvcalloc(2 * max, sizeof(*store->copies), GFP_KERNEL);
	if (!store->copies) {
		/* Never sent: both references are ours. */
		vmcoh_req_put(store);
		vmcoh_req_put(store);
		return NULL;
	}
	store->blocks = store->copies + max;
	return store;
}

/*
 * Step 1 for the block of @index, and the STORE's hold on it: with the
 * entry lock, clear the mark and take a reference to the block.  The copy
 * is allocated first, with no lock held; past the first block of a run it
 * may fail rather than reclaim, which ends the run.  Return 0 with the
 * block taken as block @store->nr of @store, 1 if it is not dirty (or
 * being loaded: invalidated under our feet), or -ENOMEM.
 */
static int writeback_take(struct vmcoh_dev *dev, pgoff_t index,
			  struct vmcoh_req *store)
{
	gfp_t gfp = store->nr ? GFP_KERNEL | __GFP_NORETRY | __GFP_NOWARN :
		    GFP_KERNEL;
	struct page *copy = alloc_page(gfp);
	struct page *block = NULL;
	void *entry;
	int err;

	if (!copy)
		return -ENOMEM;
	err = vmcoh_entry_grab(dev, index, &entry);
	if (err == VMCOH_LOADING) {
		vmcoh_req_put(entry);
	} else if (!err) {
		block = vmcoh_block_clear_dirty(&dev->map, index);
		if (block)
			get_page(block);
		vmcoh_entry_unlock(&dev->entries, index, xa_to_value(entry));
	}
	if (!block) {
		__free_page(copy);
		return err < 0 ? err : 1;
	}
	store->copies[store->nr] = copy;
	store->blocks[store->nr] = block;
	store->nr++;
	return 0;
}

/* Step 3: the run's contents, into the STORE. */
static void writeback_copy(struct vmcoh_req *store)
{
	unsigned int i;

	for (i = 0; i < store->nr; i++)
		copy_highpage(store->copies[i], store->blocks[i]);
}

/*
 * Steps 1 to 3 for the dirty block of @index and, for a server that takes
 * runs, the dirty blocks right after it in its region, at most @room and
 * up to @last; with io_rwsem held shared (no write(2)).  Send the STORE,
 * and return it (the caller's reference), NULL if the block is not dirty,
 * or an ERR_PTR.
 *
 * Each block's mark is cleared under its entry lock; then one ranged
 * unmap write-protects the run, and the blocks are copied.  A store
 * through a mapping between the two lands before the copy; one after the
 * unmap faults, and ->page_mkwrite marks its block again.
 */
static struct vmcoh_req *writeback_run(struct vmcoh_dev *dev, pgoff_t index,
				       pgoff_t last, unsigned int room)
{
	struct vmcoh_req *store;
	unsigned int max = 1;
	bool copied;
	pgoff_t next;
	int err = 0;

	if (READ_ONCE(dev->backing.store_runs))
		max = min3((pgoff_t)room, last - index + 1,
			   VMCOH_RANGE_PAGES - (index & (VMCOH_RANGE_PAGES - 1)));
	store = store_new(dev, index, max);
	if (!store)
		return ERR_PTR(-ENOMEM);
	while (store->nr < max) {
		next = index + store->nr;
		if (store->nr && !vmcoh_blocks_dirty(&dev->map, &next, next))
			break;
		err = writeback_take(dev, index + store->nr, store);
		if (err)
			break;
	}
	if (!store->nr) {
		/* Never sent: both references are ours. */
		vmcoh_req_put(store);
		vmcoh_req_put(store);
		return err < 0 ? ERR_PTR(err) : NULL;
	}

	/*
	 * unsafe=writeback_copy_before_unmap: a store through a PTE still
	 * writable lands after the copy, in a block no longer dirty.
	 */
	copied = vmcoh_unsafe(VMCOH_UNSAFE_WB_COPY_BEFORE_UNMAP);
	if (copied)
		writeback_copy(store);
	vmcoh_hold_range(dev, VMCOH_HOLD_WRITEBACK_CLEARED, index,
			 index + store->nr - 1);
	unmap_mapping_pages(dev->mapping, index, store->nr, false);
	vmcoh_count(dev, VMCOH_RANGED_UNMAPS);
	if (!copied)
		writeback_copy(store);

	err = vmcoh_server_submit(dev, store);
	if (err)
		vmcoh_store_finish(store, err);
	return store;
}

/*
 * Wait for @store and drop the caller's reference.  A fatal signal fails
 * the STORE rather than leave it in flight: once wb_mutex is released,
 * nothing may mark blocks dirty behind a drop's back.
 */
static int writeback_wait(struct vmcoh_dev *dev, struct vmcoh_req *store)
{
	int err;

	vmcoh_req_get(store);
	err = vmcoh_req_wait(dev, store, store->index);
	if (err == -EINTR) {
		vmcoh_server_cancel(dev, store, -EINTR);
		wait_for_completion(&store->done);
	}
	vmcoh_req_put(store);
	return err;
}

/* Write back the dirty blocks of [@first, @last], with wb_mutex held. */
static int writeback_range(struct vmcoh_dev *dev, pgoff_t first,
			   pgoff_t last)
{
	struct vmcoh_req *stores[WB_BATCH];
	unsigned int i, nr, blocks;
	pgoff_t index = first;
	bool more = true;
	int err = 0;

	lockdep_assert_held(&dev->backing.wb_mutex);
	while (more && !err) {
		nr = 0;
		blocks = 0;
		if (down_read_killable(&dev->io_rwsem))
			return -EINTR;
		while (nr < WB_BATCH && blocks < WB_BLOCKS &&
		       (more = vmcoh_blocks_dirty(&dev->map, &index, last))) {
			stores[nr] = writeback_run(dev, index, last,
						   WB_BLOCKS - blocks);
			if (IS_ERR(stores[nr])) {
				err = PTR_ERR(stores[nr]);
				break;
			}
			if (stores[nr]) {
				index += stores[nr]->nr - 1;
				blocks += stores[nr]->nr;
				nr++;
			}
			more = index++ != last;
			if (!more)
				break;
		}
		up_read(&dev->io_rwsem);
		/* Every STORE is waited for, so none outlives wb_mutex. */
		for (i = 0; i < nr; i++) {
			int ret = writeback_wait(dev, stores[i]);

			if (ret && !err)
				err = ret;
		}
	}
	return err;
}

/**
 * vmcoh_writeback - write the dirty blocks of [@first, @last] back
 * @dev: the device
 * @first: first page index
 * @last: last page index, inclusive
 *
 * When this returns 0, the server has kept everything written to the range
 * before the call.
 *
 * Return: 0; -EIO if a STORE failed or no writable server is attached (the
 * blocks stay dirty); -ENOMEM; -EINTR on a fatal signal.
 */
int vmcoh_writeback(struct vmcoh_dev *dev, pgoff_t first, pgoff_t last)
{
	int err;

	if (mutex_lock_killable(&dev->backing.wb_mutex))
		return -EINTR;
	err = writeback_range(dev, first, last);
	mutex_unlock(&dev->backing.wb_mutex);
	return err;
}

bool __vmcoh_drop_pending(struct vmcoh_dev *dev, pgoff_t first, pgoff_t last)
{
	struct vmcoh_backing *backing = &dev->backing;
	bool pending;

	xa_lock(&backing->inflight);
	pending = backing->dropping && first <= backing->drop_last &&
		  last >= backing->drop_first;
	xa_unlock(&backing->inflight);
	return pending;
}

/**
 * vmcoh_drop_wait - wait for the DROP over @index to end
 * @dev: the device
 * @index: an index that vmcoh_drop_pending() found being dropped
 *
 * The caller must hold no entry lock and not io_rwsem: the drop waits for
 * them (unsafe=drop_under_entry_lock aside, which is the point of it).
 *
 * Return: 0, or -EINTR on a fatal signal.
 */
int vmcoh_drop_wait(struct vmcoh_dev *dev, pgoff_t index)
{
	vmcoh_count(dev, VMCOH_DROP_WAITS);
	return wait_event_killable(dev->backing.drop_wait,
				   !vmcoh_drop_pending(dev, index, index));
}

/* Step 1, and 5: publish the range, or end the drop. */
static void drop_publish(struct vmcoh_dev *dev, bool dropping, pgoff_t first,
			 pgoff_t last)
{
	struct vmcoh_backing *backing = &dev->backing;

	xa_lock(&backing->inflight);
	backing->drop_first = first;
	backing->drop_last = last;
	WRITE_ONCE(backing->dropping, dropping);
	xa_unlock(&backing->inflight);
	if (!dropping)
		wake_up_all(&backing->drop_wait);
}

/*
 * Steps 2 to 4, with wb_mutex held.  Return 0, or why the range is kept:
 * a reclaim keeps it (-EAGAIN) if the object lost its server meanwhile,
 * since its blocks would then be the only copy.
 */
static int drop_range(struct vmcoh_dev *dev, pgoff_t first, pgoff_t last,
		      enum vmcoh_op op)
{
	bool writeback = !vmcoh_unsafe(VMCOH_UNSAFE_DROP_SKIPS_WRITEBACK);
	struct vmcoh_block_list list = { };
	pgoff_t dirty;
	int err;

	for (;;) {
		/* An orphaned object keeps what it has: nobody could reload it. */
		if (op == VMCOH_OP_RECLAIM && !vmcoh_served(dev))
			return -EAGAIN;
		if (writeback) {
			err = writeback_range(dev, first, last);
			if (err)
				return err;
		}
		if (down_write_killable(&dev->io_rwsem))
			return -EINTR;
		if (op == VMCOH_OP_RECLAIM && !vmcoh_served(dev)) {
			up_write(&dev->io_rwsem);
			return -EAGAIN;
		}
		vmcoh_entries_cancel_loads(dev, first, last);
		dirty = first;
		if (!writeback || !vmcoh_blocks_dirty(&dev->map, &dirty, last))
			break;
		up_write(&dev->io_rwsem);
	}
	vmcoh_blocks_remove(dev, first, last, &list);
	vmcoh_invalidate(dev, first, last, op, &list);
	up_write(&dev->io_rwsem);
	return 0;
}

/**
 * vmcoh_drop_range - give up [@first, @last] (see the top of this file)
 * @dev: the device
 * @first: first page index
 * @last: last page index, inclusive
 * @op: VMCOH_OP_DROP for the server's DROP, VMCOH_OP_RECLAIM for the
 *	window's reclaim of a range (window.c)
 *
 * Return: 0 once the range is written back and invalidated; -EIO if a
 * STORE failed, and the range keeps its blocks; -EAGAIN if a reclaim found
 * the object without a server (none, or orphaned); -EINTR on a fatal signal.
 */
int vmcoh_drop_range(struct vmcoh_dev *dev, pgoff_t first, pgoff_t last,
		     enum vmcoh_op op)
{
	struct vmcoh_backing *backing = &dev->backing;
	int err;

	if (mutex_lock_killable(&backing->drop_mutex))
		return -EINTR;
	drop_publish(dev, true, first, last);
	vmcoh_hold_drop(dev, first, last, op);
	err = mutex_lock_killable(&backing->wb_mutex);
	if (!err) {
		err = drop_range(dev, first, last, op);
		mutex_unlock(&backing->wb_mutex);
	}
	drop_publish(dev, false, 0, 0);
	mutex_unlock(&backing->drop_mutex);
	trace_vmcoh_drop(first, last, op, err);
	return err;
}

/**
 * vmcoh_drop_begin - make faults and I/O on the whole object wait
 * @dev: the device
 *
 * For ATTACH, which changes who owns the object's contents: steps 1 and 5
 * of a DROP with nothing in between, so that faults, read(2) and write(2)
 * that begin meanwhile wait for vmcoh_drop_end() and then look again.
 *
 * Return: 0, or -EINTR on a fatal signal.
 */
int vmcoh_drop_begin(struct vmcoh_dev *dev)
{
	if (mutex_lock_killable(&dev->backing.drop_mutex))
		return -EINTR;
	drop_publish(dev, true, 0, ULONG_MAX);
	return 0;
}

void vmcoh_drop_end(struct vmcoh_dev *dev)
{
	drop_publish(dev, false, 0, 0);
	mutex_unlock(&dev->backing.drop_mutex);
}

/**
 * vmcoh_drop - the server's DROP of a range
 * @dev: the device
 * @offset: page-aligned start
 * @len: page-aligned length, non-zero
 *
 * Return: as vmcoh_drop_range().
 */
int vmcoh_drop(struct vmcoh_dev *dev, loff_t offset, loff_t len)
{
	vmcoh_count(dev, VMCOH_DROPS);
	return vmcoh_drop_range(dev, offset >> PAGE_SHIFT,
				((offset + len) >> PAGE_SHIFT) - 1,
				VMCOH_OP_DROP);
}
