// SPDX-License-Identifier: GPL-2.0
/*
 * KUnit: the block map (blockmap.c) - allocation against the cap,
 * publication, removal onto the free list, shrinking and SEEK_DATA/HOLE.
 * The fixture's object has 16 pages and a cap of 16 blocks.
 *
 * Lock order: see vmcoh.h.  The cases call the block map directly, as its
 * callers do under io_rwsem, which nothing else contends for here.
 */

#include <linux/highmem.h>

#include "fixture.h"

static bool page_is_filled(struct page *page, u8 fill)
{
	u8 *p = kmap_local_page(page);
	bool ok = p[0] == fill && !memcmp(p, p + 1, PAGE_SIZE - 1);

	kunmap_local(p);
	return ok;
}

/* A new block is zero-filled and counted; freeing it uncounts it. */
static void blockmap_new_block_is_zeroed_and_counted(struct kunit *test)
{
	struct vmcoh_dev *dev = test->priv;
	struct page *block = vmcoh_block_new(dev);

	KUNIT_ASSERT_NOT_ERR_OR_NULL(test, block);
	KUNIT_EXPECT_TRUE(test, page_is_filled(block, 0));
	KUNIT_EXPECT_EQ(test, atomic_long_read(&dev->map.nr_blocks), 1L);
	vmcoh_block_free(dev, block);
	KUNIT_EXPECT_EQ(test, atomic_long_read(&dev->map.nr_blocks), 0L);
	KUNIT_EXPECT_EQ(test, vmcoh_counter_read(dev, VMCOH_BLOCKS_ALLOCATED),
			1ULL);
	KUNIT_EXPECT_EQ(test, vmcoh_counter_read(dev, VMCOH_BLOCKS_FREED),
			1ULL);
}

/* At the cap, allocation fails with -ENOSPC and leaves the count alone. */
static void blockmap_new_block_respects_cap(struct kunit *test)
{
	struct vmcoh_dev *dev = test->priv;
	struct page *blocks[2];
	struct page *extra;

	dev->map.max_blocks = 2;
	blocks[0] = vmcoh_block_new(dev);
	blocks[1] = vmcoh_block_new(dev);
	extra = vmcoh_block_new(dev);
	KUNIT_EXPECT_FALSE(test, IS_ERR(blocks[0]));
	KUNIT_EXPECT_FALSE(test, IS_ERR(blocks[1]));
	KUNIT_EXPECT_PTR_EQ(test, extra, ERR_PTR(-ENOSPC));
	KUNIT_EXPECT_EQ(test, atomic_long_read(&dev->map.nr_blocks), 2L);
	if (!IS_ERR(blocks[0]))
		vmcoh_block_free(dev, blocks[0]);
	/* Freeing one makes room for one. */
	extra = vmcoh_block_new(dev);
	KUNIT_EXPECT_FALSE(test, IS_ERR(extra));
	if (!IS_ERR(extra))
		vmcoh_block_free(dev, extra);
	if (!IS_ERR(blocks[1]))
		vmcoh_block_free(dev, blocks[1]);
}

/* The first block published at an index wins; the loser stays the caller's. */
static void blockmap_publish_first_wins(struct kunit *test)
{
	struct vmcoh_dev *dev = test->priv;
	struct page *first = vmcoh_test_add_block(test, dev, 3, 0x11);
	struct page *second = vmcoh_block_new(dev);
	bool ours;

	KUNIT_ASSERT_NOT_ERR_OR_NULL(test, second);
	KUNIT_EXPECT_PTR_EQ(test, vmcoh_block_publish(dev, 3, second, &ours),
			    first);
	KUNIT_EXPECT_FALSE(test, ours);
	KUNIT_EXPECT_PTR_EQ(test, vmcoh_block_lookup(&dev->map, 3), first);
	vmcoh_block_free(dev, second);
	KUNIT_EXPECT_NULL(test, vmcoh_block_lookup(&dev->map, 2));
}

/* Nothing is published at or beyond EOF, so a shrink cannot miss it. */
static void blockmap_publish_beyond_eof_fails(struct kunit *test)
{
	struct vmcoh_dev *dev = test->priv;
	struct page *block = vmcoh_block_new(dev);
	bool ours;

	KUNIT_ASSERT_NOT_ERR_OR_NULL(test, block);
	KUNIT_EXPECT_PTR_EQ(test, vmcoh_block_publish(dev, 16, block, &ours),
			    ERR_PTR(-ENXIO));
	KUNIT_EXPECT_NULL(test, vmcoh_block_lookup(&dev->map, 16));
	vmcoh_block_free(dev, block);
}

/* Removal takes exactly the range onto the list; freeing empties it. */
static void blockmap_remove_collects_range(struct kunit *test)
{
	struct vmcoh_dev *dev = test->priv;
	struct vmcoh_block_list list = { };
	struct page *blocks[10];
	pgoff_t i;

	for (i = 0; i < 10; i++)
		blocks[i] = vmcoh_test_add_block(test, dev, i, i);
	vmcoh_blocks_remove(dev, 2, 5, &list);
	KUNIT_EXPECT_EQ(test, list.count, 4UL);
	/* Still allocated until freed: invalidation comes in between. */
	KUNIT_EXPECT_EQ(test, atomic_long_read(&dev->map.nr_blocks), 10L);
	for (i = 0; i < 10; i++) {
		bool removed = i >= 2 && i <= 5;

		KUNIT_EXPECT_PTR_EQ(test, vmcoh_block_lookup(&dev->map, i),
				    removed ? NULL : blocks[i]);
		/* Contents are untouched until the blocks are freed. */
		KUNIT_EXPECT_TRUE(test, page_is_filled(blocks[i], i));
	}
	vmcoh_blocks_free(dev, &list);
	KUNIT_EXPECT_NULL(test, list.head);
	KUNIT_EXPECT_EQ(test, list.count, 0UL);
	KUNIT_EXPECT_EQ(test, atomic_long_read(&dev->map.nr_blocks), 6L);
	KUNIT_EXPECT_EQ(test, vmcoh_counter_read(dev, VMCOH_BLOCKS_FREED),
			4ULL);
}

/* A shrink removes every block at or beyond the new EOF; a grow none. */
static void blockmap_shrink_removes_beyond_eof(struct kunit *test)
{
	struct vmcoh_dev *dev = test->priv;
	struct vmcoh_block_list list = { };
	pgoff_t i;

	for (i = 0; i < 10; i++)
		vmcoh_test_add_block(test, dev, i, 0x5a);
	vmcoh_blockmap_set_size(dev, 3 << PAGE_SHIFT, &list);
	KUNIT_EXPECT_EQ(test, vmcoh_size(dev), 3LL << PAGE_SHIFT);
	KUNIT_EXPECT_EQ(test, list.count, 7UL);
	KUNIT_EXPECT_NOT_NULL(test, vmcoh_block_lookup(&dev->map, 2));
	KUNIT_EXPECT_NULL(test, vmcoh_block_lookup(&dev->map, 3));
	vmcoh_blocks_free(dev, &list);

	vmcoh_blockmap_set_size(dev, 16 << PAGE_SHIFT, &list);
	KUNIT_EXPECT_EQ(test, list.count, 0UL);
	KUNIT_EXPECT_EQ(test, atomic_long_read(&dev->map.nr_blocks), 3L);
	/* What the shrink removed reads as a hole after the grow. */
	KUNIT_EXPECT_NULL(test, vmcoh_block_lookup(&dev->map, 3));
}

/*
 * A shrink of a dense map removes every block beyond EOF across the lock
 * drops of a long walk.  With 64-slot nodes the walk from 128 drops xa_lock
 * right after emptying the node of 128..191: resuming there with the
 * xas_pause() of Linux 6.1 skipped 192..254, which then came back as data
 * when the object grew.
 */
static void blockmap_shrink_dense_map_misses_nothing(struct kunit *test)
{
	const pgoff_t pages = 4 * VMCOH_WALK_BATCH;
	const pgoff_t keep = 2 * VMCOH_WALK_BATCH;
	struct vmcoh_dev *dev = test->priv;
	struct vmcoh_block_list list = { };
	unsigned long index = keep;
	pgoff_t i;

	dev->map.max_blocks = pages;
	vmcoh_blockmap_set_size(dev, pages << PAGE_SHIFT, &list);
	for (i = 0; i < pages; i++)
		vmcoh_test_add_block(test, dev, i, 0);
	vmcoh_blockmap_set_size(dev, keep << PAGE_SHIFT, &list);
	KUNIT_EXPECT_EQ(test, list.count, pages - keep);
	KUNIT_EXPECT_NULL(test, xa_find(&dev->map.blocks, &index, ULONG_MAX,
					XA_PRESENT));
	KUNIT_EXPECT_NOT_NULL(test, vmcoh_block_lookup(&dev->map, keep - 1));
	vmcoh_blocks_free(dev, &list);
	KUNIT_EXPECT_EQ(test, atomic_long_read(&dev->map.nr_blocks),
			(long)keep);
}

/*
 * Fault-around's window lookup: one walk finds each block of the window,
 * across a leaf-node boundary, and nothing outside it.
 */
static void blockmap_lookup_window_finds_each_block(struct kunit *test)
{
	static const pgoff_t at[] = { 57, 60, 63, 64, 70, 74 };
	struct vmcoh_dev *dev = test->priv;
	struct page *added[ARRAY_SIZE(at)];
	struct page *blocks[BITS_PER_LONG] = { };
	struct vmcoh_block_list list = { };
	unsigned int i;

	vmcoh_blockmap_set_size(dev, 128 << PAGE_SHIFT, &list);
	for (i = 0; i < ARRAY_SIZE(at); i++)
		added[i] = vmcoh_test_add_block(test, dev, at[i], 1);
	KUNIT_EXPECT_EQ(test,
			vmcoh_blocks_lookup_window(&dev->map, 58, 16, blocks),
			BIT(60 - 58) | BIT(63 - 58) | BIT(64 - 58) |
			BIT(70 - 58));
	for (i = 1; i < 5; i++)
		KUNIT_EXPECT_PTR_EQ(test, blocks[at[i] - 58], added[i]);
	KUNIT_EXPECT_EQ(test,
			vmcoh_blocks_lookup_window(&dev->map, 61, 2, blocks),
			0UL);
	KUNIT_EXPECT_EQ(test,
			vmcoh_blocks_lookup_window(&dev->map, 74, 1, blocks),
			1UL);
}

/* SEEK_DATA/SEEK_HOLE over blocks at 2, 3, 7 and 15 of 16 pages. */
static void blockmap_seek_data_and_holes(struct kunit *test)
{
	struct vmcoh_dev *dev = test->priv;
	struct vmcoh_blockmap *map = &dev->map;
	const loff_t pg = PAGE_SIZE;

	vmcoh_test_add_block(test, dev, 2, 1);
	vmcoh_test_add_block(test, dev, 3, 1);
	vmcoh_test_add_block(test, dev, 7, 1);
	vmcoh_test_add_block(test, dev, 15, 1);
	KUNIT_EXPECT_EQ(test, vmcoh_blockmap_seek(map, 0, SEEK_DATA), 2 * pg);
	KUNIT_EXPECT_EQ(test, vmcoh_blockmap_seek(map, 2 * pg + 9, SEEK_DATA),
			2 * pg + 9);
	KUNIT_EXPECT_EQ(test, vmcoh_blockmap_seek(map, 4 * pg, SEEK_DATA),
			7 * pg);
	KUNIT_EXPECT_EQ(test, vmcoh_blockmap_seek(map, 0, SEEK_HOLE), 0LL);
	KUNIT_EXPECT_EQ(test, vmcoh_blockmap_seek(map, 2 * pg, SEEK_HOLE),
			4 * pg);
	KUNIT_EXPECT_EQ(test, vmcoh_blockmap_seek(map, 7 * pg + 5, SEEK_HOLE),
			8 * pg);
	/* EOF is a hole; nothing is found at or beyond it. */
	KUNIT_EXPECT_EQ(test, vmcoh_blockmap_seek(map, 15 * pg, SEEK_HOLE),
			16 * pg);
	KUNIT_EXPECT_EQ(test, vmcoh_blockmap_seek(map, 16 * pg, SEEK_DATA),
			(loff_t)-ENXIO);
	KUNIT_EXPECT_EQ(test, vmcoh_blockmap_seek(map, 16 * pg, SEEK_HOLE),
			(loff_t)-ENXIO);
	KUNIT_EXPECT_EQ(test, vmcoh_blockmap_seek(map, -1, SEEK_DATA),
			(loff_t)-ENXIO);
	KUNIT_EXPECT_EQ(test, vmcoh_blockmap_seek(map, 8 * pg, SEEK_DATA),
			15 * pg);
}

static struct kunit_case vmcoh_blockmap_cases[] = {
	KUNIT_CASE(blockmap_new_block_is_zeroed_and_counted),
	KUNIT_CASE(blockmap_new_block_respects_cap),
	KUNIT_CASE(blockmap_publish_first_wins),
	KUNIT_CASE(blockmap_publish_beyond_eof_fails),
	KUNIT_CASE(blockmap_remove_collects_range),
	KUNIT_CASE(blockmap_shrink_removes_beyond_eof),
	KUNIT_CASE(blockmap_shrink_dense_map_misses_nothing),
	KUNIT_CASE(blockmap_lookup_window_finds_each_block),
	KUNIT_CASE(blockmap_seek_data_and_holes),
	{}
};

static struct kunit_suite vmcoh_blockmap_suite = {
	.name = "vmcoh_blockmap",
	.init = vmcoh_test_dev_init,
	.exit = vmcoh_test_dev_exit,
	.test_cases = vmcoh_blockmap_cases,
};

kunit_test_suite(vmcoh_blockmap_suite);
