// SPDX-License-Identifier: GPL-2.0
/*
 * The block map: the "filesystem" layer of vmcoh.
 *
 * An xarray maps each page index of the object to the block backing it, a
 * zero-filled page allocated on first write (write(2) or a write fault) and
 * charged to the writer's memory cgroup.  An absent index is a hole and
 * reads as zeros.  The object's size lives here too, because allocation and
 * shrinking must agree on it atomically.
 *
 * Who may change what:
 *   - adding a block: write(2) under io_rwsem, or a write fault under the
 *     index's entry lock; vmcoh_block_publish() settles a race between them.
 *   - removing blocks and shrinking: punch and resize, under io_rwsem held
 *     exclusive, followed by invalidation before the blocks are freed.
 *   - the DIRTY mark of a backed object's block: set by write(2) under
 *     io_rwsem exclusive, or by a write fault under the entry lock; cleared
 *     by writeback under both io_rwsem (shared) and the entry lock, so it
 *     copies a block nobody is changing (writeback.c).
 * So a block looked up under io_rwsem (shared or exclusive), or under the
 * entry lock of its index, stays allocated until that lock is dropped:
 * invalidation frees blocks only after it has waited for the index's entry
 * lock, and only while holding io_rwsem exclusive.  The same holds for a
 * block found in the map under its own page lock (vmcoh_block_get(), then
 * lock_page(), then a second look): invalidation also waits for the page
 * lock of each block it took out before it frees it.
 *
 * Lock order: see vmcoh.h.  blocks.xa_lock is a leaf, never held across a
 * sleep or together with entries.xa_lock.
 */

#include <linux/gfp.h>
#include <linux/highmem.h>
#include <linux/mm.h>
#include <linux/pagemap.h>
#include <linux/sched.h>

#include "vmcoh.h"

void vmcoh_blockmap_init(struct vmcoh_blockmap *map, loff_t size,
			 unsigned long max_blocks)
{
	xa_init_flags(&map->blocks, XA_FLAGS_ACCOUNT);
	map->ops = NULL;
	map->size = size;
	map->max_blocks = max_blocks;
	atomic_long_set(&map->nr_blocks, 0);
	atomic_long_set(&map->nr_dirty, 0);
}

/*
 * The caller holds io_rwsem or @index's entry lock, which keeps the block
 * returned from being freed (see above).
 */
struct page *vmcoh_block_lookup(struct vmcoh_blockmap *map, pgoff_t index)
{
	return xa_load(&map->blocks, index);
}

/**
 * vmcoh_blocks_history - how many blocks in a row end right before @index
 * @map: the block map
 * @index: page index
 * @max: count no further
 *
 * A lockless look, for readahead (backing.c), as the page cache counts
 * the cached pages before a miss (page_cache_sync_ra()'s context
 * readahead): a hint, which may change at once.
 */
unsigned long vmcoh_blocks_history(struct vmcoh_blockmap *map, pgoff_t index,
				   unsigned long max)
{
	XA_STATE(xas, &map->blocks, index - 1);
	unsigned long n = 0;
	struct page *block;

	if (!index)
		return 0;
	rcu_read_lock();
	block = xas_load(&xas);
	while (n < max) {
		if (xas_retry(&xas, block)) {
			xas_set(&xas, index - 1 - n);
			block = xas_load(&xas);
			continue;
		}
		if (!block || ++n == index)
			break;
		block = xas_prev(&xas);
	}
	rcu_read_unlock();
	return n;
}

/**
 * vmcoh_blocks_lookup_window - the blocks of a window, in one walk
 * @map: the block map
 * @first: first index of the window
 * @nr: number of indices, at most BITS_PER_LONG
 * @blocks: receives the block of @first + i in @blocks[i], where present
 *
 * Each block is kept from being freed only if the caller holds io_rwsem or
 * that index's entry lock (see vmcoh_block_lookup()); a caller holding
 * neither gets a hint, which it must confirm under the entry lock.
 *
 * Return: bit i set if @first + i has a block.
 */
unsigned long vmcoh_blocks_lookup_window(struct vmcoh_blockmap *map,
					 pgoff_t first, unsigned int nr,
					 struct page **blocks)
{
	XA_STATE(xas, &map->blocks, first);
	unsigned long present = 0;
	struct page *block;

	rcu_read_lock();
	xas_for_each(&xas, block, first + nr - 1) {
		if (xas_retry(&xas, block))
			continue;
		blocks[xas.xa_index - first] = block;
		present |= BIT(xas.xa_index - first);
	}
	rcu_read_unlock();
	return present;
}

/*
 * Take a reference to @block, just loaded through @xas under RCU, if it is
 * still there once taken: the map's own reference goes only after the
 * block left it, so the reference is then to the block, not to a page
 * reused since (as filemap_get_entry() takes a folio's).
 */
static bool block_try_get(struct xa_state *xas, struct page *block)
{
	if (!folio_try_get(page_folio(block)))
		return false;
	if (likely(block == xas_reload(xas)))
		return true;
	put_page(block);
	return false;
}

/**
 * vmcoh_block_get - the block of @index, with a reference of its own
 * @map: the block map
 * @index: page index
 *
 * For a caller that holds neither io_rwsem nor the entry lock: the fault
 * path of a plain object, which then locks the block's page and looks again
 * (fault.c, "Page locks"), and unsafe=lookup_before_lock, whose broken
 * protocol may map a stale block but never a freed page.  Lockless, as
 * filemap_get_entry() is (block_try_get()).
 *
 * Return: the block, or NULL for a hole.
 */
struct page *vmcoh_block_get(struct vmcoh_blockmap *map, pgoff_t index)
{
	XA_STATE(xas, &map->blocks, index);
	struct page *block;

	rcu_read_lock();
repeat:
	xas_reset(&xas);
	block = xas_load(&xas);
	if (xas_retry(&xas, block))
		goto repeat;
	if (block && !block_try_get(&xas, block))
		goto repeat;
	rcu_read_unlock();
	return block;
}

/**
 * vmcoh_blocks_trylock_window - lock the blocks of a window, never waiting
 * @map: the block map
 * @first: first index of the window
 * @nr: number of indices, at most BITS_PER_LONG
 * @want: bit i set to lock the block of @first + i, if it has one
 * @blocks: receives the block of @first + i in @blocks[i], where locked
 *
 * For a caller that holds neither io_rwsem nor the entry locks, and may not
 * sleep (fault-around under RCU): each block gets a reference and its page
 * lock, as filemap_map_pages() takes each folio's, and is looked up once
 * more with the lock held.  A block whose page lock is taken, or that left
 * the map meanwhile, is skipped.  Each one returned stays allocated until
 * vmcoh_blocks_unlock_window(), as after vmcoh_block_get() and lock_page().
 *
 * Return: bit i set if @blocks[i] is the block of @first + i, locked.
 */
unsigned long vmcoh_blocks_trylock_window(struct vmcoh_blockmap *map,
					  pgoff_t first, unsigned int nr,
					  unsigned long want,
					  struct page **blocks)
{
	XA_STATE(xas, &map->blocks, first);
	unsigned long locked = 0;
	struct page *block;
	unsigned int i;

	rcu_read_lock();
	xas_for_each(&xas, block, first + nr - 1) {
		if (xas_retry(&xas, block))
			continue;
		i = xas.xa_index - first;
		if (!(want & BIT(i)) || !block_try_get(&xas, block))
			continue;
		if (!trylock_page(block))
			goto put;
		if (unlikely(block != xas_reload(&xas))) {
			unlock_page(block);
			goto put;
		}
		blocks[i] = block;
		locked |= BIT(i);
		continue;
put:
		put_page(block);
	}
	rcu_read_unlock();
	return locked;
}

/* Undo vmcoh_blocks_trylock_window() for the blocks of @locked. */
void vmcoh_blocks_unlock_window(struct page **blocks, unsigned long locked)
{
	unsigned int i;

	for_each_set_bit(i, &locked, BITS_PER_LONG) {
		unlock_page(blocks[i]);
		put_page(blocks[i]);
	}
}

/**
 * vmcoh_blocks_hole - the run of holes around @index, within bounds
 * @map: the block map
 * @index: an index without a block
 * @first: in, the lowest index the run may start at; out, where it starts
 * @last: in, the highest index it may end at; out, where it ends
 *
 * A lockless look, for the run a load asks for (backing.c): a block
 * published meanwhile is not seen, and is loaded again for nothing.
 */
void vmcoh_blocks_hole(struct vmcoh_blockmap *map, pgoff_t index,
		       pgoff_t *first, pgoff_t *last)
{
	XA_STATE(xas, &map->blocks, *first);
	pgoff_t lo = *first;
	struct page *block;

	rcu_read_lock();
	xas_for_each(&xas, block, *last) {
		if (xas_retry(&xas, block))
			continue;
		if (xas.xa_index < index) {
			lo = xas.xa_index + 1;
		} else if (xas.xa_index > index) {
			*last = xas.xa_index - 1;
			break;
		}
	}
	rcu_read_unlock();
	*first = lo;
}

/**
 * vmcoh_block_alloc - allocate a block, not yet in the map
 * @dev: the device
 * @zero: zero-fill it; a caller that writes every byte before anyone
 *	  reads the block (a REPLY's copy) need not
 *
 * Return: the block, ERR_PTR(-ENOSPC) at the max_mb cap, or
 * ERR_PTR(-ENOMEM).
 */
struct page *vmcoh_block_alloc(struct vmcoh_dev *dev, bool zero)
{
	struct vmcoh_blockmap *map = &dev->map;
	gfp_t gfp = GFP_HIGHUSER | (zero ? __GFP_ZERO : 0);
	struct page *block;

	/* Blocks live elsewhere: this is only their contents, in transit. */
	if (map->ops)
		return alloc_page(gfp) ?: ERR_PTR(-ENOMEM);
	if (atomic_long_inc_return(&map->nr_blocks) > map->max_blocks) {
		atomic_long_dec(&map->nr_blocks);
		return ERR_PTR(-ENOSPC);
	}
	block = alloc_page(gfp | __GFP_ACCOUNT);
	if (!block) {
		atomic_long_dec(&map->nr_blocks);
		return ERR_PTR(-ENOMEM);
	}
	vmcoh_count(dev, VMCOH_BLOCKS_ALLOCATED);
	return block;
}

/* A zero-filled block, not yet in the map: see vmcoh_block_alloc(). */
struct page *vmcoh_block_new(struct vmcoh_dev *dev)
{
	return vmcoh_block_alloc(dev, true);
}

/*
 * Drop our reference to a block that was never published, or that is out
 * of the map and no longer mapped by any PTE.  A GUP pin may still hold
 * the page; it is freed when the pin is released.
 */
void vmcoh_block_free(struct vmcoh_dev *dev, struct page *block)
{
	/* Blocks that live elsewhere are freed by vmcoh_blocks_free() only. */
	if (dev->map.ops) {
		if (!WARN_ON_ONCE(PageCompound(block)))
			put_page(block);
		return;
	}
	put_page(block);
	atomic_long_dec(&dev->map.nr_blocks);
	vmcoh_count(dev, VMCOH_BLOCKS_FREED);
}

/**
 * vmcoh_block_store - store @block at @index if it is a hole below EOF
 * @map: the block map
 * @index: page index
 * @block: the page to store
 * @fill: write @block's contents first, under the lock, where the index is
 *	  seen to be a hole: a copy of @src, or zeros if @src is NULL
 * @src: see @fill
 * @stored: set if @block went in; with a window, the page of an index may
 *	    be the block already there, so the pointer does not tell
 *
 * The size check and the store happen under blocks.xa_lock, the lock a
 * shrink holds while it lowers the size: a block is never published beyond
 * an EOF that a shrink has already set, so the shrink cannot miss it.
 *
 * Return: @block; the block already there; or ERR_PTR(-ENXIO) beyond EOF,
 * ERR_PTR(-ENOMEM).
 */
struct page *vmcoh_block_store(struct vmcoh_blockmap *map, pgoff_t index,
			       struct page *block, bool fill,
			       struct page *src, bool *stored)
{
	XA_STATE(xas, &map->blocks, index);
	struct page *cur;

	*stored = false;
	do {
		xas_lock(&xas);
		if (index >= (map->size >> PAGE_SHIFT)) {
			cur = ERR_PTR(-ENXIO);
		} else {
			cur = xas_load(&xas);
			if (!cur) {
				if (fill && src)
					copy_highpage(block, src);
				else if (fill)
					clear_highpage(block);
				xas_store(&xas, block);
				cur = xas_error(&xas) ? NULL : block;
				*stored = cur == block;
			}
		}
		xas_unlock(&xas);
	} while (xas_nomem(&xas, GFP_KERNEL));

	return cur ?: ERR_PTR(xas_error(&xas));
}

/**
 * vmcoh_block_publish - make @block back @index, unless it is taken
 * @dev: the device
 * @index: page index
 * @block: a block from vmcoh_block_new()
 * @ours: set if @block's contents went in
 *
 * See vmcoh_block_store().  With a window, the contents are copied into
 * the index's page of its range (window.c); the caller frees @block in any
 * case.
 *
 * Return: the block of @index: @block (or its window copy) if *@ours, else
 * the block some other task published first (the caller discards its
 * own); or ERR_PTR(-ENXIO) if @index is beyond EOF, ERR_PTR(-ENOSPC) if
 * the window has no free range, or ERR_PTR(-ENOMEM).
 */
struct page *vmcoh_block_publish(struct vmcoh_dev *dev, pgoff_t index,
				 struct page *block, bool *ours)
{
	if (dev->map.ops)
		return dev->map.ops->publish(dev, index, block, ours);
	return vmcoh_block_store(&dev->map, index, block, false, NULL, ours);
}

/**
 * vmcoh_blocks_store_copies - vmcoh_block_store() of copies, for a batch
 * @map: the block map
 * @first: the batch's first index
 * @want: bit i set to store at @first + i (at most BITS_PER_LONG indices)
 * @row: the pages to store, in a row: @row + i for @first + i; or NULL
 * @pages: else @pages[i] for @first + i
 * @srcs: @srcs[i], the contents for @first + i, copied in first
 *
 * One xa_lock section for the batch, walking along with xas_next().  As
 * in vmcoh_block_store(), each index is copied into only where it is seen
 * to be a hole below EOF, under the lock, and whatever else stored there
 * first stays.
 *
 * Return: the bits of @want whose blocks went in.
 */
unsigned long vmcoh_blocks_store_copies(struct vmcoh_blockmap *map,
					pgoff_t first, unsigned long want,
					struct page *row,
					struct page *const *pages,
					struct page *const *srcs)
{
	XA_STATE(xas, &map->blocks, first);
	unsigned long stored = 0;
	struct page *block;
	unsigned int i;
	pgoff_t eof;

	while (want) {
		i = __ffs(want);
		xas_lock(&xas);
		xas_set(&xas, first + i);
		eof = map->size >> PAGE_SHIFT;
		for (; want; want &= ~BIT(i), i = want ? __ffs(want) : 0) {
			if (first + i >= eof) {
				want = 0;	/* and every index after it */
				break;
			}
			while (xas.xa_index != first + i)
				xas_next(&xas);
			if (xas_load(&xas))
				continue;
			block = row ? row + i : pages[i];
			copy_highpage(block, srcs[i]);
			xas_store(&xas, block);
			if (xas_error(&xas))
				break;	/* want keeps bit i: done again */
			stored |= BIT(i);
		}
		xas_unlock(&xas);
		if (!xas_nomem(&xas, GFP_KERNEL))
			break;
	}
	return stored;
}

/**
 * vmcoh_blocks_publish - vmcoh_block_publish() for a batch of one region
 * @dev: the device, whose blocks live elsewhere (a window)
 * @first: the batch's first index
 * @want: bit i set to publish @first + i (at most BITS_PER_LONG indices,
 *	  all of one window range)
 * @srcs: @srcs[i], the contents for @first + i; the caller's still
 *
 * Return: the bits of @want whose contents went in.
 */
unsigned long vmcoh_blocks_publish(struct vmcoh_dev *dev, pgoff_t first,
				   unsigned long want,
				   struct page *const *srcs)
{
	const struct vmcoh_block_ops *ops = dev->map.ops;

	/* Blocks of their own would go in themselves, not as copies. */
	if (WARN_ON_ONCE(!ops))
		return 0;
	return ops->publish_batch(dev, first, want, srcs);
}

static void block_list_add(struct vmcoh_block_list *list, struct page *block)
{
	set_page_private(block, (unsigned long)list->head);
	list->head = block;
	list->count++;
}

/*
 * Take the blocks of [@first, @last] out of the map onto @list.  Called
 * with io_rwsem held exclusive.  The blocks may still be mapped: the caller
 * must invalidate the range before it frees them.
 */
static void blocks_remove_locked(struct vmcoh_dev *dev,
				 struct xa_state *xas, pgoff_t last,
				 struct vmcoh_block_list *list)
	__must_hold(dev->map.blocks.xa_lock)
{
	const struct vmcoh_block_ops *ops = dev->map.ops;
	unsigned long n = 0;
	struct page *block;

	xas_for_each(xas, block, last) {
		pgoff_t index = xas->xa_index;

		if (xas_get_mark(xas, VMCOH_BLOCK_DIRTY))
			atomic_long_dec(&dev->map.nr_dirty);
		xas_store(xas, NULL);
		if (!ops || ops->removed(dev, index, block, list))
			block_list_add(list, block);
		if (++n % VMCOH_WALK_BATCH == 0 || need_resched())
			vmcoh_xas_relax(xas);
	}
}

void vmcoh_blocks_remove(struct vmcoh_dev *dev, pgoff_t first, pgoff_t last,
			 struct vmcoh_block_list *list)
{
	XA_STATE(xas, &dev->map.blocks, first);

	xas_lock(&xas);
	blocks_remove_locked(dev, &xas, last, list);
	xas_unlock(&xas);
}

/**
 * vmcoh_blockmap_set_size - change the size; on shrink, take the blocks
 * beyond the new EOF out of the map
 * @dev: the device
 * @size: new size, page-aligned
 * @list: receives the removed blocks
 *
 * Called with io_rwsem held exclusive.  The new size is visible to
 * vmcoh_block_publish() before the first block is removed.
 */
void vmcoh_blockmap_set_size(struct vmcoh_dev *dev, loff_t size,
			     struct vmcoh_block_list *list)
{
	struct vmcoh_blockmap *map = &dev->map;
	XA_STATE(xas, &map->blocks, size >> PAGE_SHIFT);
	bool shrink = size < map->size;

	xas_lock(&xas);
	WRITE_ONCE(map->size, size);
	if (shrink)
		blocks_remove_locked(dev, &xas, ULONG_MAX, list);
	xas_unlock(&xas);
}

/* Free blocks that are out of the map and no longer mapped by any PTE. */
void vmcoh_blocks_free(struct vmcoh_dev *dev, struct vmcoh_block_list *list)
{
	struct page *block;

	while ((block = list->head)) {
		list->head = (struct page *)page_private(block);
		set_page_private(block, 0);
		vmcoh_block_free(dev, block);
		cond_resched();
	}
	if (list->ranges)
		dev->map.ops->free(dev, list);
	list->count = 0;
}

/**
 * vmcoh_block_mark_dirty - @block, at @index, has contents the server lacks
 * @dev: the device
 * @index: page index
 * @block: the block the caller found there, under io_rwsem exclusive or the
 *	   entry lock of @index
 *
 * Return: false if @block is no longer the block of @index (an invalidation
 * took it), true once it is marked.
 */
bool vmcoh_block_mark_dirty(struct vmcoh_dev *dev, pgoff_t index,
			    struct page *block)
{
	struct vmcoh_blockmap *map = &dev->map;
	XA_STATE(xas, &map->blocks, index);
	bool present, dirtied = false;

	xas_lock(&xas);
	present = xas_load(&xas) == block;
	if (present && !xas_get_mark(&xas, VMCOH_BLOCK_DIRTY)) {
		xas_set_mark(&xas, VMCOH_BLOCK_DIRTY);
		atomic_long_inc(&map->nr_dirty);
		dirtied = true;
	}
	xas_unlock(&xas);
	if (dirtied)
		vmcoh_count(dev, VMCOH_BLOCKS_DIRTIED);
	return present;
}

/**
 * vmcoh_block_clear_dirty - take the DIRTY mark off the block of @index
 * @map: the block map
 * @index: page index
 *
 * Return: the block, if it was dirty; NULL if clean or absent.
 */
struct page *vmcoh_block_clear_dirty(struct vmcoh_blockmap *map,
				     pgoff_t index)
{
	XA_STATE(xas, &map->blocks, index);
	struct page *block;

	xas_lock(&xas);
	block = xas_load(&xas);
	if (block && xas_get_mark(&xas, VMCOH_BLOCK_DIRTY)) {
		xas_clear_mark(&xas, VMCOH_BLOCK_DIRTY);
		atomic_long_dec(&map->nr_dirty);
	} else {
		block = NULL;
	}
	xas_unlock(&xas);
	return block;
}

/**
 * vmcoh_blocks_dirty - find the first dirty block in [*@index, @last]
 * @map: the block map
 * @index: where to start; returns the index found
 * @last: last index to look at (inclusive)
 *
 * Return: true if one was found.
 */
bool vmcoh_blocks_dirty(struct vmcoh_blockmap *map, pgoff_t *index,
			pgoff_t last)
{
	XA_STATE(xas, &map->blocks, *index);
	struct page *block;

	if (!atomic_long_read(&map->nr_dirty))
		return false;
	/* Under xa_lock: marks are set under it, not for lockless readers. */
	xas_lock(&xas);
	block = xas_find_marked(&xas, last, VMCOH_BLOCK_DIRTY);
	xas_unlock(&xas);
	if (block)
		*index = xas.xa_index;
	return block;
}

/**
 * vmcoh_blockmap_seek - SEEK_DATA / SEEK_HOLE on the block map
 * @map: the block map
 * @pos: where to start
 * @whence: SEEK_DATA or SEEK_HOLE
 *
 * Data is any block-backed byte; EOF counts as a hole.  A racing write
 * makes the answer stale, as it does for any filesystem.
 *
 * Return: the offset found, or -ENXIO if @pos is at or beyond EOF or no
 * data follows it.
 */
loff_t vmcoh_blockmap_seek(struct vmcoh_blockmap *map, loff_t pos, int whence)
{
	loff_t size = READ_ONCE(map->size);
	pgoff_t index, last;
	XA_STATE(xas, &map->blocks, 0);
	struct page *block;
	loff_t found;

	if (pos < 0 || pos >= size)
		return -ENXIO;
	index = pos >> PAGE_SHIFT;
	last = (size - 1) >> PAGE_SHIFT;
	xas_set(&xas, index);

	rcu_read_lock();
	if (whence == SEEK_DATA) {
		do {
			block = xas_find(&xas, last);
		} while (xas_retry(&xas, block));
		found = block ? max_t(loff_t, pos,
				      (loff_t)xas.xa_index << PAGE_SHIFT) :
				-ENXIO;
	} else {
		pgoff_t next = index;

		xas_for_each(&xas, block, last) {
			if (xas_retry(&xas, block))
				continue;
			if (xas.xa_index != next)
				break;
			next++;
		}
		found = next == index ? pos :
			min_t(loff_t, size, (loff_t)next << PAGE_SHIFT);
	}
	rcu_read_unlock();
	return found;
}

void vmcoh_blockmap_destroy(struct vmcoh_dev *dev)
{
	struct vmcoh_block_list list = { };

	vmcoh_blocks_remove(dev, 0, ULONG_MAX, &list);
	vmcoh_blocks_free(dev, &list);
	WARN_ON_ONCE(atomic_long_read(&dev->map.nr_blocks));
	xa_destroy(&dev->map.blocks);
}
