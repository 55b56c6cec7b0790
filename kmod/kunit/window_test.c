// SPDX-License-Identifier: GPL-2.0
/*
 * KUnit suite for the window (window.c): which page a block gets, when a
 * range goes back to the pool, and what a pin or a republication does to
 * that.  Each case runs against a private device of three 2 MiB regions
 * with a window of two ranges; it has no server, so nothing is reclaimed
 * but empty ranges (one case poses as backed, with nothing dirty, to let
 * the worker run).
 *
 * Lock order: see vmcoh.h.  The cases take io_rwsem around removals, as
 * invalidation does.
 */

#include <linux/delay.h>
#include <linux/highmem.h>
#include <linux/mm.h>
#include <linux/workqueue.h>

#include "fixture.h"

#define TEST_RANGES		2

static int window_test_init(struct kunit *test)
{
	struct vmcoh_dev *dev;
	int err = vmcoh_test_dev_init(test);

	if (err)
		return err;
	dev = test->priv;
	dev->map.size = (loff_t)(TEST_RANGES + 1) * VMCOH_RANGE_SIZE;
	dev->map.max_blocks = TEST_RANGES * VMCOH_RANGE_PAGES;
	return vmcoh_window_create(dev, TEST_RANGES);
}

static void window_test_exit(struct kunit *test)
{
	struct vmcoh_dev *dev = test->priv;

	if (!dev)	/* skipped: see vmcoh_test_dev_init() */
		return;
	vmcoh_window_stop(dev);
	vmcoh_test_dev_exit(test);
	vmcoh_window_destroy(dev);
}

static struct vmcoh_window_stats test_stats(struct vmcoh_dev *dev)
{
	struct vmcoh_window_stats stats;

	vmcoh_window_read_stats(dev, &stats);
	return stats;
}

/* Publish @index with every byte @fill, from a page of the caller's. */
static struct page *test_publish(struct kunit *test, pgoff_t index, int fill)
{
	struct vmcoh_dev *dev = test->priv;
	struct page *src = vmcoh_block_new(dev);
	struct page *block;
	bool ours;

	KUNIT_ASSERT_NOT_ERR_OR_NULL(test, src);
	memset_page(src, 0, fill, PAGE_SIZE);
	block = vmcoh_block_publish(dev, index, src, &ours);
	vmcoh_block_free(dev, src);
	if (!IS_ERR(block))
		KUNIT_EXPECT_TRUE(test, ours);
	return block;
}

/* Take [@first, @last] out of the map; the caller frees the list. */
static void test_remove(struct vmcoh_dev *dev, pgoff_t first, pgoff_t last,
			struct vmcoh_block_list *list)
{
	down_write(&dev->io_rwsem);
	vmcoh_blocks_remove(dev, first, last, list);
	up_write(&dev->io_rwsem);
}

static void test_free(struct vmcoh_dev *dev, struct vmcoh_block_list *list)
{
	down_write(&dev->io_rwsem);
	vmcoh_blocks_free(dev, list);
	up_write(&dev->io_rwsem);
}

static u8 first_byte(struct page *page)
{
	u8 *p = kmap_local_page(page);
	u8 b = *p;

	kunmap_local(p);
	return b;
}

/* Block i of a region is page i of one compound range; the copy went in. */
static void window_block_is_its_page_of_the_range(struct kunit *test)
{
	struct vmcoh_dev *dev = test->priv;
	struct page *a = test_publish(test, 3, 0x11);
	struct page *b = test_publish(test, 10, 0x22);

	KUNIT_ASSERT_NOT_ERR_OR_NULL(test, a);
	KUNIT_ASSERT_NOT_ERR_OR_NULL(test, b);
	KUNIT_EXPECT_TRUE(test, PageCompound(a));
	KUNIT_EXPECT_PTR_EQ(test, compound_head(a), compound_head(b));
	KUNIT_EXPECT_PTR_EQ(test, b, a + 7);
	KUNIT_EXPECT_EQ(test, first_byte(a), 0x11);
	KUNIT_EXPECT_PTR_EQ(test, vmcoh_block_lookup(&dev->map, 10), b);
	KUNIT_EXPECT_EQ(test, test_stats(dev).ranges_busy, 1ULL);
	KUNIT_EXPECT_EQ(test, atomic_long_read(&dev->map.nr_blocks), 2L);
}

/* Full: a third region gets no range, until a punched one comes back. */
static void window_full_then_freed_by_removal(struct kunit *test)
{
	struct vmcoh_dev *dev = test->priv;
	struct vmcoh_block_list list = { };

	KUNIT_ASSERT_NOT_ERR_OR_NULL(test, test_publish(test, 0, 1));
	KUNIT_ASSERT_NOT_ERR_OR_NULL(test,
				     test_publish(test, VMCOH_RANGE_PAGES, 2));
	KUNIT_EXPECT_PTR_EQ(test, test_publish(test, 2 * VMCOH_RANGE_PAGES, 3),
			    ERR_PTR(-ENOSPC));
	KUNIT_EXPECT_EQ(test, vmcoh_window_reserve(dev, 2 * VMCOH_RANGE_PAGES, false),
			-ENOSPC);

	test_remove(dev, 0, VMCOH_RANGE_PAGES - 1, &list);
	KUNIT_EXPECT_EQ(test, test_stats(dev).ranges_free, 0ULL);
	test_free(dev, &list);
	KUNIT_EXPECT_EQ(test, test_stats(dev).ranges_free, 1ULL);
	KUNIT_EXPECT_NOT_ERR_OR_NULL(test,
				     test_publish(test, 2 * VMCOH_RANGE_PAGES, 3));
}

/* A pinned range stays with its region; a reclaim gives it back once idle. */
static void window_pinned_range_is_kept_until_idle(struct kunit *test)
{
	struct vmcoh_dev *dev = test->priv;
	struct vmcoh_block_list list = { };
	struct page *block = test_publish(test, 5, 0x33);

	KUNIT_ASSERT_NOT_ERR_OR_NULL(test, block);
	get_page(block);	/* as GUP would */
	test_remove(dev, 5, 5, &list);
	test_free(dev, &list);
	KUNIT_EXPECT_EQ(test, test_stats(dev).ranges_busy, 1ULL);
	KUNIT_EXPECT_EQ(test, atomic_long_read(&dev->map.nr_blocks), 0L);

	/* The other range is free: nothing to reclaim for a reserve there. */
	KUNIT_ASSERT_NOT_ERR_OR_NULL(test,
				     test_publish(test, VMCOH_RANGE_PAGES, 4));
	KUNIT_EXPECT_EQ(test, vmcoh_window_reclaim_inline(dev,
							  VMCOH_RANGE_PAGES),
			-ENOSPC);
	put_page(block);
	KUNIT_EXPECT_EQ(test, vmcoh_window_reclaim_inline(dev,
							  VMCOH_RANGE_PAGES), 0);
	KUNIT_EXPECT_EQ(test, test_stats(dev).ranges_free, 1ULL);
	KUNIT_EXPECT_EQ(test, test_stats(dev).reclaims_inline, 1ULL);
}

/*
 * An index published again before the invalidation that removed its block
 * frees it: freeing must not touch the page, which holds the new contents,
 * nor leave the range's count short.
 */
static void window_republished_block_survives_the_old_free(struct kunit *test)
{
	struct vmcoh_dev *dev = test->priv;
	struct vmcoh_block_list list = { };
	struct page *old = test_publish(test, 9, 0x44);
	struct page *new;

	KUNIT_ASSERT_NOT_ERR_OR_NULL(test, old);
	test_remove(dev, 9, 9, &list);
	new = test_publish(test, 9, 0x55);
	KUNIT_ASSERT_PTR_EQ(test, new, old);
	test_free(dev, &list);

	KUNIT_EXPECT_EQ(test, first_byte(new), 0x55);
	KUNIT_EXPECT_PTR_EQ(test, vmcoh_block_lookup(&dev->map, 9), new);
	KUNIT_EXPECT_EQ(test, atomic_long_read(&dev->map.nr_blocks), 1L);
	KUNIT_EXPECT_EQ(test, test_stats(dev).ranges_busy, 1ULL);
}

/*
 * A page whose block was freed while the range was pinned is not published
 * again until the pin goes (window.c, "Pins"); other pages of the range
 * are.  The same while the block is being freed: the pin is seen then too.
 */
static void window_pinned_page_waits_for_the_pin(struct kunit *test)
{
	struct vmcoh_dev *dev = test->priv;
	struct vmcoh_block_list list = { };
	struct page *block = test_publish(test, 5, 0x88);

	KUNIT_ASSERT_NOT_ERR_OR_NULL(test, block);
	KUNIT_ASSERT_NOT_ERR_OR_NULL(test, test_publish(test, 6, 0x89));
	get_page(block);		/* as GUP does */
	test_remove(dev, 5, 5, &list);
	KUNIT_EXPECT_PTR_EQ(test, test_publish(test, 5, 0x99),
			    ERR_PTR(-EBUSY));
	test_free(dev, &list);
	KUNIT_EXPECT_PTR_EQ(test, test_publish(test, 5, 0x99),
			    ERR_PTR(-EBUSY));
	KUNIT_EXPECT_EQ(test, vmcoh_window_reserve(dev, 5, false), -EBUSY);
	KUNIT_EXPECT_EQ(test, vmcoh_window_reserve(dev, 7, false), 0);
	KUNIT_EXPECT_EQ(test, first_byte(block), 0x88);

	put_page(block);
	KUNIT_EXPECT_EQ(test, vmcoh_window_wait_unpinned(dev, 5), 0);
	KUNIT_EXPECT_PTR_EQ(test, test_publish(test, 5, 0x99), block);
	KUNIT_EXPECT_EQ(test, first_byte(block), 0x99);
	KUNIT_EXPECT_EQ(test, atomic_long_read(&dev->map.nr_blocks), 2L);
}

/* Two publishers of one index: the second finds the first's contents. */
static void window_second_publisher_finds_the_first(struct kunit *test)
{
	struct vmcoh_dev *dev = test->priv;
	struct page *src = vmcoh_block_new(dev);
	struct page *first = test_publish(test, 1, 0x66);
	struct page *block;
	bool ours;

	KUNIT_ASSERT_NOT_ERR_OR_NULL(test, src);
	KUNIT_ASSERT_NOT_ERR_OR_NULL(test, first);
	memset_page(src, 0, 0x77, PAGE_SIZE);
	block = vmcoh_block_publish(dev, 1, src, &ours);
	vmcoh_block_free(dev, src);
	KUNIT_EXPECT_PTR_EQ(test, block, first);
	KUNIT_EXPECT_FALSE(test, ours);
	KUNIT_EXPECT_EQ(test, first_byte(first), 0x66);
	KUNIT_EXPECT_EQ(test, atomic_long_read(&dev->map.nr_blocks), 1L);
}

/*
 * A region is resident, for a 2 MiB mapping, once every one of its blocks
 * is in the map, and no longer once one leaves it, before it is freed; a
 * publisher that found the block there already does not count it twice.
 */
static void window_resident_counts_every_block_once(struct kunit *test)
{
	struct vmcoh_dev *dev = test->priv;
	struct vmcoh_block_list list = { };
	struct page *head = NULL, *block, *src;
	bool ours;
	pgoff_t i;

	for (i = 0; i < VMCOH_RANGE_PAGES - 1; i++) {
		block = test_publish(test, i, 0x12);
		KUNIT_ASSERT_NOT_ERR_OR_NULL(test, block);
		if (!head)
			head = block;
	}
	KUNIT_EXPECT_NULL(test, vmcoh_window_resident(dev, 0));
	src = vmcoh_block_new(dev);
	KUNIT_ASSERT_NOT_ERR_OR_NULL(test, src);
	block = vmcoh_block_publish(dev, 3, src, &ours);
	vmcoh_block_free(dev, src);
	KUNIT_EXPECT_FALSE(test, ours);
	KUNIT_EXPECT_NULL_MSG(test, vmcoh_window_resident(dev, 0),
			      "a block published twice counted twice");
	block = test_publish(test, VMCOH_RANGE_PAGES - 1, 0x12);
	KUNIT_ASSERT_NOT_ERR_OR_NULL(test, block);
	KUNIT_EXPECT_PTR_EQ(test, vmcoh_window_resident(dev, 0), head);
	KUNIT_EXPECT_PTR_EQ(test, block, nth_page(head, VMCOH_RANGE_PAGES - 1));
	KUNIT_EXPECT_NULL(test, vmcoh_window_resident(dev, VMCOH_RANGE_PAGES));

	test_remove(dev, 7, 7, &list);
	KUNIT_EXPECT_NULL_MSG(test, vmcoh_window_resident(dev, 0),
			      "out of the map, not yet freed");
	test_free(dev, &list);
	KUNIT_EXPECT_NOT_ERR_OR_NULL(test, test_publish(test, 7, 0x56));
	KUNIT_EXPECT_PTR_EQ(test, vmcoh_window_resident(dev, 0), head);
}

static long test_op_window_wait(struct vmcoh_test_worker *w)
{
	return vmcoh_window_wait(w->dev);
}

/*
 * Every range is empty but pinned, so the worker that a task waiting for a
 * range asks can give none back.  When the pins go, nothing tells the
 * worker: the waiter must ask again, or it sleeps until load_timeout_ms
 * and fails.
 */
static void window_waiter_asks_again_once_a_pin_goes(struct kunit *test)
{
	struct vmcoh_dev *dev = test->priv;
	struct page *a = test_publish(test, 5, 0x11);
	struct page *b = test_publish(test, VMCOH_RANGE_PAGES + 5, 0x22);
	struct vmcoh_block_list list = { };
	struct vmcoh_test_worker *w;

	KUNIT_ASSERT_NOT_ERR_OR_NULL(test, a);
	KUNIT_ASSERT_NOT_ERR_OR_NULL(test, b);
	get_page(a);	/* as GUP would */
	get_page(b);
	test_remove(dev, 0, 2 * VMCOH_RANGE_PAGES - 1, &list);
	test_free(dev, &list);
	KUNIT_EXPECT_EQ(test, test_stats(dev).ranges_free, 0ULL);

	/* Backed, with nothing to write back: the worker may reclaim. */
	WRITE_ONCE(dev->backing.state, VMCOH_BACKING_SERVED);
	WRITE_ONCE(dev->load_timeout_ms, 10000);	/* not the parameter */
	w = vmcoh_test_worker_start(test, dev, test_op_window_wait, 0, 0, 0);
	KUNIT_EXPECT_TRUE(test,
			  vmcoh_test_wait_counter(dev, VMCOH_RANGE_WAITS, 1));
	msleep(200);
	flush_work(&dev->window.work);	/* it found nothing to give back */
	KUNIT_EXPECT_FALSE(test, vmcoh_test_worker_done(w));
	put_page(a);
	put_page(b);
	KUNIT_EXPECT_EQ(test, vmcoh_test_worker_wait(test, w), 0L);
	KUNIT_EXPECT_EQ(test, test_stats(dev).range_wait_timeouts, 0ULL);
	KUNIT_EXPECT_GE(test, test_stats(dev).ranges_free, 1ULL);
	WRITE_ONCE(dev->backing.state, VMCOH_BACKING_NONE);
}

/* One reclaim, skipping @skip's region, as a served object's read(2) does. */
static void test_reclaim(struct kunit *test, pgoff_t skip)
{
	struct vmcoh_dev *dev = test->priv;

	/* Backed only for the reclaim, so that no publish wakes the worker. */
	WRITE_ONCE(dev->backing.state, VMCOH_BACKING_SERVED);
	KUNIT_EXPECT_EQ(test, vmcoh_window_reclaim_inline(dev, skip), 0);
	WRITE_ONCE(dev->backing.state, VMCOH_BACKING_NONE);
}

/*
 * Which range goes (window.c): a region that comes back after a reclaim
 * took its range gets an active one, while fewer than half are, and a
 * reclaim takes an inactive range before it, though the active one is the
 * least recently used - the one strict LRU took.
 */
static void window_refaulted_region_outlives_newer_ones(struct kunit *test)
{
	struct vmcoh_dev *dev = test->priv;
	const pgoff_t a = 5, b = VMCOH_RANGE_PAGES + 5;
	const pgoff_t c = 2 * VMCOH_RANGE_PAGES + 5;

	KUNIT_ASSERT_NOT_ERR_OR_NULL(test, test_publish(test, a, 0x11));
	KUNIT_ASSERT_NOT_ERR_OR_NULL(test, test_publish(test, b, 0x22));
	test_reclaim(test, c);		/* a, the least recently used */
	KUNIT_EXPECT_NULL(test, vmcoh_block_lookup(&dev->map, a));
	KUNIT_ASSERT_NOT_ERR_OR_NULL(test, test_publish(test, c, 0x33));
	test_reclaim(test, a);		/* b */
	KUNIT_EXPECT_NULL(test, vmcoh_block_lookup(&dev->map, b));
	KUNIT_EXPECT_EQ(test, test_stats(dev).refaults, 0ULL);

	/* a comes back: a refault, and active. */
	KUNIT_ASSERT_NOT_ERR_OR_NULL(test, test_publish(test, a, 0x11));
	KUNIT_EXPECT_EQ(test, test_stats(dev).refaults, 1ULL);
	test_reclaim(test, b);		/* c, inactive */
	KUNIT_EXPECT_NULL(test, vmcoh_block_lookup(&dev->map, c));

	/* b comes back too, but half the window is active already. */
	KUNIT_ASSERT_NOT_ERR_OR_NULL(test, test_publish(test, b, 0x22));
	KUNIT_EXPECT_EQ(test, test_stats(dev).refaults, 2ULL);
	test_reclaim(test, c);		/* b, though a is older */
	KUNIT_EXPECT_NOT_NULL(test, vmcoh_block_lookup(&dev->map, a));
	KUNIT_EXPECT_NULL(test, vmcoh_block_lookup(&dev->map, b));
}

static struct kunit_case vmcoh_window_cases[] = {
	KUNIT_CASE(window_block_is_its_page_of_the_range),
	KUNIT_CASE(window_full_then_freed_by_removal),
	KUNIT_CASE(window_pinned_range_is_kept_until_idle),
	KUNIT_CASE(window_republished_block_survives_the_old_free),
	KUNIT_CASE(window_pinned_page_waits_for_the_pin),
	KUNIT_CASE(window_second_publisher_finds_the_first),
	KUNIT_CASE(window_resident_counts_every_block_once),
	KUNIT_CASE(window_waiter_asks_again_once_a_pin_goes),
	KUNIT_CASE(window_refaulted_region_outlives_newer_ones),
	{}
};

static struct kunit_suite vmcoh_window_suite = {
	.name = "vmcoh_window",
	.init = window_test_init,
	.exit = window_test_exit,
	.test_cases = vmcoh_window_cases,
};

kunit_test_suite(vmcoh_window_suite);
