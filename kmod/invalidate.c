// SPDX-License-Identifier: GPL-2.0
/*
 * Invalidation: every operation that changes a block mapping - write(2)
 * filling holes, punching a hole, shrinking - does it in this order:
 *
 *   1. change the block map           (new faults now see the new state)
 *   2. remove the range's entries,    (faults that read the old state have
 *      waiting for locked ones         finished installing their PTEs)
 *   3. one ranged unmap               (those PTEs are gone)
 *   3b. wait for each block's page    (a fault mapping a block under its
 *       lock; unmap again if the       page lock, not an entry lock, has
 *       blocks are mapped              its PTE in; see
 *                                      invalidate_wait_for_stores());
 *       in a window, for counted       (or a fault-around that read the
 *       fault-arounds; unmap again     old block map maps it now; see
 *       if any was in flight           invalidate_new_generation())
 *   4. free the blocks taken out in 1 (nothing can map them any more)
 *
 * Why entries before page tables (mm/truncate.c, commit cd656375f946):
 * unmapping first leaves a window in which a fault that read the old block
 * map under its entry lock installs its PTE after the unmap; removing the
 * entry afterwards cannot undo that PTE, which then maps a block that step
 * 4 frees.  Removing entries first, waiting for each lock, closes the
 * window: any PTE built from the old block map exists before step 3 runs.
 *
 * Why one unmap: a ranged unmap walks each VMA's page tables once; one call
 * per page would cost a tree walk per page.  truncate_pagecache() unmaps a
 * second time because its first unmap precedes page removal, so a COW can
 * slip in between; here the unmap comes after entry removal, when every
 * fault into the range re-checks the size under a fresh entry lock and
 * answers SIGBUS, so no COW can be made from a page beyond the new EOF
 * after it.  A shrink unmaps with even_cows so private copies beyond EOF
 * go too (they must SIGBUS); a punch leaves private copies alone, as
 * truncate_pagecache_range() does.
 *
 * Lock order: see vmcoh.h.  Callers hold io_rwsem exclusive, which
 * serializes invalidations against each other and against write(2); step
 * 3b takes each block's page lock under it, holding nothing else, or waits
 * for counted fault-arounds, which wait for nothing.
 */

#include <linux/highmem.h>
#include <linux/mm.h>
#include <linux/pagemap.h>
#include <linux/wait_bit.h>

#include "hooks.h"
#include "trace.h"
#include "vmcoh.h"

static void invalidate_unmap(struct vmcoh_dev *dev, pgoff_t first,
			     pgoff_t last, bool even_cows)
{
	loff_t start = (loff_t)first << PAGE_SHIFT;
	loff_t len = last == ULONG_MAX ? 0 :
		     (loff_t)(last - first + 1) << PAGE_SHIFT;

	unmap_mapping_range(dev->mapping, start, len, even_cows);
	vmcoh_count(dev, VMCOH_RANGED_UNMAPS);
}

static unsigned long invalidate_entries(struct vmcoh_dev *dev, pgoff_t first,
					pgoff_t last)
{
	unsigned long removed = vmcoh_entries_remove(dev, first, last);

	vmcoh_count_add(dev, VMCOH_ENTRIES_REMOVED, removed);
	return removed;
}

/*
 * Step 3b: a plain object's blocks are mapped under their page locks, with
 * no entry lock (fault.c, "Page locks"), so such a PTE may come in after
 * the ranged unmap, or exist with no entry for step 2 to find.  Wait for
 * each block's lock, as mm/truncate.c waits for each folio's after its
 * first unmap: then no such PTE is still to come.  Return whether the
 * blocks are mapped: if they are, the range is unmapped again.
 */
static bool invalidate_wait_for_stores(struct vmcoh_block_list *blocks)
{
	struct page *block;
	bool mapped = false;

	for (block = blocks->head; block;
	     block = (struct page *)page_private(block)) {
		lock_page(block);
		mapped |= page_mapped(block);
		unlock_page(block);
	}
	return mapped;
}

/**
 * vmcoh_around_begin - count a fault-around that maps blocks under no lock
 * @dev: the device, vmcoh_around_counted()
 *
 * The caller reads the block map after this, and installs PTEs for the
 * blocks it found, checking nothing else about them (fault.c, "Counted
 * fault-around").  That is safe because an invalidation that frees blocks
 * starts a new generation after it changed the block map, and waits for
 * the fault-arounds counted in the one before (invalidate_new_generation()):
 * the count is taken, then the generation read again, and the two barriers
 * pair so that either the invalidation sees this count, or this fault-around
 * sees the new generation - and then the block map as it changed.  Only a
 * count in the generation still current is kept.  Never waits, so callers
 * may hold RCU.
 *
 * Return: the slot to hand to vmcoh_around_end(), or -EAGAIN if an
 * invalidation began a generation meanwhile: the caller maps nothing.
 */
int vmcoh_around_begin(struct vmcoh_dev *dev)
{
	struct vmcoh_around *around = &dev->around;
	unsigned long gen = READ_ONCE(around->gen);
	int slot = gen & 1;

	atomic_inc(&around->count[slot]);
	smp_mb__after_atomic();	/* pairs with invalidate_new_generation() */
	if (likely(READ_ONCE(around->gen) == gen))
		return slot;
	vmcoh_around_end(dev, slot);
	return -EAGAIN;
}

/**
 * vmcoh_around_end - the fault-around counted in @slot has installed its PTEs
 * @dev: the device
 * @slot: what vmcoh_around_begin() returned
 */
void vmcoh_around_end(struct vmcoh_dev *dev, int slot)
{
	atomic_t *count = &dev->around.count[slot];

	/* Fully ordered: the PTEs before the count, and before the wakeup's look. */
	if (atomic_dec_and_test(count))
		wake_up_var(count);
}

/*
 * Step 3b for counted fault-arounds (fault.c), and the start of step 3: a
 * new generation, once the block map changed.  A fault-around counted in
 * the old one may have read the block map before it changed, and install a
 * PTE for a block taken out after any unmap; one counted in the new one
 * reads the block map after (vmcoh_around_begin()).  So the caller unmaps
 * after this whatever was taken out, and waits, with
 * invalidate_wait_around(), for the old generation if it had any in flight:
 * those that ended before the count is read here had their PTEs in before
 * that unmap.  Returns the old generation's slot if it had any; -1 if not.
 */
static int invalidate_new_generation(struct vmcoh_dev *dev)
{
	struct vmcoh_around *around = &dev->around;
	int old = around->gen & 1;

	lockdep_assert_held_write(&dev->io_rwsem);
	smp_mb();	/* the block map's change before the new generation */
	WRITE_ONCE(around->gen, around->gen + 1);
	smp_mb();	/* pairs with vmcoh_around_begin() */
	return atomic_read(&around->count[old]) ? old : -1;
}

/* Wait for the fault-arounds of the generation in @slot to have ended. */
static void invalidate_wait_around(struct vmcoh_dev *dev, int slot)
{
	atomic_t *count = &dev->around.count[slot];

	wait_var_event(count, !atomic_read(count));
}

/*
 * unsafe=free_before_unmap: blocks go back to the allocator while stale
 * PTEs may still map them (they keep the pages alive, being refcounted),
 * poisoned so that any load through them is seen to read freed memory.
 */
static void invalidate_poison_and_free(struct vmcoh_dev *dev,
				       struct vmcoh_block_list *blocks)
{
	struct page *block;

	for (block = blocks->head; block;
	     block = (struct page *)page_private(block))
		memset_page(block, 0, VMCOH_POISON_BYTE, PAGE_SIZE);
	vmcoh_blocks_free(dev, blocks);
}

/**
 * vmcoh_invalidate - steps 2 to 4 for [@first, @last]
 * @dev: the device
 * @first: first page index
 * @last: last page index, inclusive; ULONG_MAX for "to the end"
 * @op: the operation that changed the block map; a shrink also unmaps
 *	private copies (even_cows)
 * @blocks: the blocks it took out of the map, freed last (NULL for none)
 *
 * Called with io_rwsem held exclusive, after the block map changed.
 */
void vmcoh_invalidate(struct vmcoh_dev *dev, pgoff_t first, pgoff_t last,
		      enum vmcoh_op op, struct vmcoh_block_list *blocks)
{
	bool even_cows = op == VMCOH_OP_SHRINK &&
			 !vmcoh_unsafe(VMCOH_UNSAFE_NO_EVEN_COWS);
	unsigned long freed = blocks ? blocks->count : 0;
	/* Blocks fault-around may have mapped with no entry (fault.c). */
	bool counted = freed && vmcoh_around_counted(dev);
	unsigned int unmaps = 0;
	unsigned long removed;
	int around = -1;

	lockdep_assert_held_write(&dev->io_rwsem);
	vmcoh_count(dev, VMCOH_INVALIDATIONS);
	vmcoh_hold_inval(dev, VMCOH_HOLD_INVAL_MAP_CHANGED, first, last, op);

	if (vmcoh_unsafe(VMCOH_UNSAFE_UNMAP_BEFORE_REMOVE)) {
		/* The order cd656375f946 fixed in mm/truncate.c. */
		vmcoh_hold_inval(dev, VMCOH_HOLD_INVAL_BEFORE_UNMAP, first,
				 last, op);
		invalidate_unmap(dev, first, last, even_cows);
		unmaps++;
		removed = invalidate_entries(dev, first, last);
		vmcoh_hold_inval(dev, VMCOH_HOLD_INVAL_ENTRIES_REMOVED, first,
				 last, op);
	} else {
		removed = invalidate_entries(dev, first, last);
		vmcoh_hold_inval(dev, VMCOH_HOLD_INVAL_ENTRIES_REMOVED, first,
				 last, op);
		if (blocks && vmcoh_unsafe(VMCOH_UNSAFE_FREE_BEFORE_UNMAP))
			invalidate_poison_and_free(dev, blocks);
		if (counted)
			around = invalidate_new_generation(dev);
		vmcoh_hold_inval(dev, VMCOH_HOLD_INVAL_BEFORE_UNMAP, first,
				 last, op);
		/*
		 * Without entries there are no PTEs of the object in the
		 * range but those of blocks mapped under their page locks,
		 * which step 3b finds (see entry.c), or by a counted
		 * fault-around, which leaves no entry: blocks taken out of a
		 * window with fault-around are always unmapped (which also
		 * removes a PMD that outlived its 2 MiB entry, the bug of
		 * unsafe=pmd_downgrade_no_unmap: that is caught with
		 * fault-around off, as test_hooks=1 has it).  Private copies
		 * are anonymous pages that outlive their entry, so a shrink
		 * always unmaps.
		 */
		if (removed || even_cows || counted) {
			invalidate_unmap(dev, first, last, even_cows);
			unmaps++;
		}
	}

	/*
	 * unsafe=no_store_wait: free what a store, or a counted fault-around,
	 * may map after the unmap.
	 * unsafe=unmap_before_remove skips this step too: its second unmap
	 * would remove the PTE that order leaves behind, and hide the bug the
	 * variant is there to show.
	 */
	if (blocks && !vmcoh_unsafe(VMCOH_UNSAFE_NO_STORE_WAIT) &&
	    !vmcoh_unsafe(VMCOH_UNSAFE_UNMAP_BEFORE_REMOVE)) {
		if (around >= 0)
			invalidate_wait_around(dev, around);
		if (invalidate_wait_for_stores(blocks) || around >= 0) {
			invalidate_unmap(dev, first, last, even_cows);
			unmaps++;
		}
	}

	vmcoh_hold_inval(dev, VMCOH_HOLD_INVAL_BEFORE_FREE, first, last, op);
	if (blocks)
		vmcoh_blocks_free(dev, blocks);
	trace_vmcoh_invalidate(first, last, op, removed, unmaps, freed);
}

/**
 * vmcoh_punch_hole - turn [@offset, @offset + @len) into a hole
 * @dev: the device
 * @offset: page-aligned start
 * @len: page-aligned length, non-zero; the range is clipped at EOF
 *
 * When this returns, every load in the range through any mapping, and
 * every read(2), sees zeros, until something writes there again.
 *
 * Return: 0, or -EOPNOTSUPP for a backed object (read-only).
 */
int vmcoh_punch_hole(struct vmcoh_dev *dev, loff_t offset, loff_t len)
{
	struct vmcoh_block_list list = { };
	pgoff_t first, last;
	int ret = 0;
	loff_t end;

	down_write(&dev->io_rwsem);
	end = min(offset + len, vmcoh_size(dev));
	if (vmcoh_backed(dev)) {
		ret = -EOPNOTSUPP;
	} else if (offset < end) {
		first = offset >> PAGE_SHIFT;
		last = (end >> PAGE_SHIFT) - 1;
		vmcoh_blocks_remove(dev, first, last, &list);
		/* An unchanged block map leaves every mapping valid. */
		if (list.count)
			vmcoh_invalidate(dev, first, last, VMCOH_OP_PUNCH,
					 &list);
	}
	up_write(&dev->io_rwsem);
	return ret;
}

/**
 * vmcoh_set_size - grow or shrink the object
 * @dev: the device
 * @size: new size, page-aligned
 *
 * Growing exposes holes.  When a shrink returns, every access beyond the
 * new EOF through any mapping, private copies included, raises SIGBUS.
 *
 * Return: 0.
 */
int vmcoh_set_size(struct vmcoh_dev *dev, loff_t size)
{
	struct vmcoh_block_list list = { };
	bool shrink;

	down_write(&dev->io_rwsem);
	shrink = size < vmcoh_size(dev);
	vmcoh_blockmap_set_size(dev, size, &list);
	/*
	 * Nothing is mapped beyond the old EOF (faults there fail), so only
	 * a shrink has anything to invalidate - holes included, whose zero
	 * page and private copies must go as well.
	 */
	if (shrink)
		vmcoh_invalidate(dev, size >> PAGE_SHIFT, ULONG_MAX,
				 VMCOH_OP_SHRINK, &list);
	up_write(&dev->io_rwsem);
	return 0;
}
