// SPDX-License-Identifier: GPL-2.0
/*
 * KUnit: invalidation bookkeeping (invalidate.c) - what punch and resize
 * remove, unmap and free, in which order, and that blocks outlive every
 * entry lock held on their range.  The fixture's address space has no
 * VMAs, so unmaps are counted but find nothing.
 *
 * Lock order: see vmcoh.h.  The test thread holds one entry lock while a
 * worker takes io_rwsem and waits for it, as a fault does against a punch.
 */

#include "fixture.h"

#define ZERO	VMCOH_ENTRY_ZERO

static long op_punch(struct vmcoh_test_worker *w)
{
	return vmcoh_punch_hole(w->dev, (loff_t)w->first << PAGE_SHIFT,
				(loff_t)(w->last - w->first + 1) << PAGE_SHIFT);
}

/* Blocks at 0..7, each with the entry a read fault would have left. */
static void populate(struct kunit *test, struct vmcoh_dev *dev)
{
	pgoff_t i;

	for (i = 0; i < 8; i++) {
		vmcoh_test_add_block(test, dev, i, 0x33);
		vmcoh_test_put_entry(test, dev, i, 0);
	}
}

static u64 count(struct vmcoh_dev *dev, enum vmcoh_counter counter)
{
	return vmcoh_counter_read(dev, counter);
}

/* A punch removes the range's blocks and entries, unmaps once, frees. */
static void invalidate_punch_removes_blocks_and_entries(struct kunit *test)
{
	struct vmcoh_dev *dev = test->priv;
	pgoff_t i;

	populate(test, dev);
	KUNIT_EXPECT_EQ(test, vmcoh_punch_hole(dev, 2 * PAGE_SIZE,
					       3 * PAGE_SIZE), 0);
	for (i = 0; i < 8; i++) {
		bool punched = i >= 2 && i <= 4;

		KUNIT_EXPECT_EQ(test, !vmcoh_block_lookup(&dev->map, i),
				punched);
		KUNIT_EXPECT_EQ(test, !xa_load(&dev->entries.xa, i), punched);
	}
	KUNIT_EXPECT_EQ(test, count(dev, VMCOH_INVALIDATIONS), 1ULL);
	KUNIT_EXPECT_EQ(test, count(dev, VMCOH_ENTRIES_REMOVED), 3ULL);
	KUNIT_EXPECT_EQ(test, count(dev, VMCOH_RANGED_UNMAPS), 1ULL);
	KUNIT_EXPECT_EQ(test, count(dev, VMCOH_BLOCKS_FREED), 3ULL);
	KUNIT_EXPECT_EQ(test, atomic_long_read(&dev->map.nr_blocks), 5L);
}

/*
 * Punching holes changes no block mapping, so nothing is invalidated: a
 * zero page mapped there stays valid.
 */
static void invalidate_punch_of_holes_is_a_noop(struct kunit *test)
{
	struct vmcoh_dev *dev = test->priv;

	vmcoh_test_put_entry(test, dev, 10, ZERO);
	KUNIT_EXPECT_EQ(test, vmcoh_punch_hole(dev, 8 * PAGE_SIZE,
					       4 * PAGE_SIZE), 0);
	KUNIT_EXPECT_EQ(test, count(dev, VMCOH_INVALIDATIONS), 0ULL);
	KUNIT_EXPECT_EQ(test, vmcoh_test_entry(dev, 10), ZERO);
}

/* A block with no entry (never mapped) is punched without an unmap. */
static void invalidate_unmapped_block_skips_unmap(struct kunit *test)
{
	struct vmcoh_dev *dev = test->priv;

	vmcoh_test_add_block(test, dev, 12, 0x44);
	KUNIT_EXPECT_EQ(test, vmcoh_punch_hole(dev, 12 * PAGE_SIZE,
					       PAGE_SIZE), 0);
	KUNIT_EXPECT_EQ(test, count(dev, VMCOH_INVALIDATIONS), 1ULL);
	KUNIT_EXPECT_EQ(test, count(dev, VMCOH_RANGED_UNMAPS), 0ULL);
	KUNIT_EXPECT_EQ(test, count(dev, VMCOH_BLOCKS_FREED), 1ULL);
}

/*
 * A shrink removes every entry beyond EOF, holes' included, and always
 * unmaps (private copies outlive entries); a grow invalidates nothing.
 */
static void invalidate_shrink_clears_beyond_eof(struct kunit *test)
{
	struct vmcoh_dev *dev = test->priv;

	populate(test, dev);
	vmcoh_test_put_entry(test, dev, 12, ZERO);
	KUNIT_EXPECT_EQ(test, vmcoh_set_size(dev, 6 * PAGE_SIZE), 0);
	KUNIT_EXPECT_EQ(test, count(dev, VMCOH_ENTRIES_REMOVED), 3ULL);
	KUNIT_EXPECT_EQ(test, count(dev, VMCOH_RANGED_UNMAPS), 1ULL);
	KUNIT_EXPECT_EQ(test, count(dev, VMCOH_BLOCKS_FREED), 2ULL);
	KUNIT_EXPECT_NULL(test, xa_load(&dev->entries.xa, 12));
	KUNIT_EXPECT_NOT_NULL(test, xa_load(&dev->entries.xa, 5));

	/* A grow invalidates nothing ... */
	KUNIT_EXPECT_EQ(test, vmcoh_set_size(dev, 16 * PAGE_SIZE), 0);
	KUNIT_EXPECT_EQ(test, count(dev, VMCOH_INVALIDATIONS), 1ULL);
	/* ... and a shrink over holes only still unmaps (even_cows). */
	KUNIT_EXPECT_EQ(test, vmcoh_set_size(dev, 12 * PAGE_SIZE), 0);
	KUNIT_EXPECT_EQ(test, count(dev, VMCOH_INVALIDATIONS), 2ULL);
	KUNIT_EXPECT_EQ(test, count(dev, VMCOH_ENTRIES_REMOVED), 3ULL);
	KUNIT_EXPECT_EQ(test, count(dev, VMCOH_RANGED_UNMAPS), 2ULL);
}

/*
 * A punch waits for the entry lock of a fault in flight before it unmaps,
 * and frees the block only after that: a fault that read the block map
 * before the punch never maps a freed block.
 */
static void invalidate_waits_for_fault_before_free(struct kunit *test)
{
	struct vmcoh_dev *dev = test->priv;
	struct vmcoh_test_worker *w;
	void *entry;

	populate(test, dev);
	/* The "fault": holds index 3's lock, as if about to map its block. */
	KUNIT_ASSERT_EQ(test, vmcoh_entry_grab(dev, 3, &entry), 0);
	w = vmcoh_test_worker_start(test, dev, op_punch, 2, 5, 0);
	KUNIT_EXPECT_TRUE(test, vmcoh_test_wait_sleepers(dev, 1));
	/* The block map has changed, but nothing is unmapped or freed yet. */
	KUNIT_EXPECT_NULL(test, vmcoh_block_lookup(&dev->map, 3));
	KUNIT_EXPECT_EQ(test, count(dev, VMCOH_RANGED_UNMAPS), 0ULL);
	KUNIT_EXPECT_EQ(test, count(dev, VMCOH_BLOCKS_FREED), 0ULL);
	KUNIT_EXPECT_FALSE(test, vmcoh_test_worker_done(w));

	vmcoh_entry_unlock(&dev->entries, 3, 0);
	KUNIT_EXPECT_EQ(test, vmcoh_test_worker_wait(test, w), 0L);
	KUNIT_EXPECT_EQ(test, count(dev, VMCOH_ENTRIES_REMOVED), 4ULL);
	KUNIT_EXPECT_EQ(test, count(dev, VMCOH_RANGED_UNMAPS), 1ULL);
	KUNIT_EXPECT_EQ(test, count(dev, VMCOH_BLOCKS_FREED), 4ULL);
}

static struct kunit_case vmcoh_invalidate_cases[] = {
	KUNIT_CASE(invalidate_punch_removes_blocks_and_entries),
	KUNIT_CASE(invalidate_punch_of_holes_is_a_noop),
	KUNIT_CASE(invalidate_unmapped_block_skips_unmap),
	KUNIT_CASE(invalidate_shrink_clears_beyond_eof),
	KUNIT_CASE(invalidate_waits_for_fault_before_free),
	{}
};

static struct kunit_suite vmcoh_invalidate_suite = {
	.name = "vmcoh_invalidate",
	.init = vmcoh_test_dev_init,
	.exit = vmcoh_test_dev_exit,
	.test_cases = vmcoh_invalidate_cases,
};

kunit_test_suite(vmcoh_invalidate_suite);
