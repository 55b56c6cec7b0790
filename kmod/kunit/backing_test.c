// SPDX-License-Identifier: GPL-2.0
/*
 * KUnit: the LOADING states of backing.c, and writeback.c's STOREs.
 *
 * The device of the fixture plays the backed object with no server process:
 * its channel is marked SERVED with a stand-in file, loads queue in
 * backing.inflight, and each test answers them itself, taking them out of
 * inflight as REPLY does (test_take()).
 *
 * Lock order: see vmcoh.h.  The test thread holds at most one entry lock,
 * and never while it waits.
 */

#include <linux/highmem.h>

#include "fixture.h"

#define EMPTY	VMCOH_ENTRY_EMPTY
#define ZERO	VMCOH_ENTRY_ZERO

static int backing_test_init(struct kunit *test)
{
	struct vmcoh_dev *dev;
	int err = vmcoh_test_dev_init(test);

	if (err)
		return err;
	dev = test->priv;
	dev->backing.state = VMCOH_BACKING_SERVED;
	dev->backing.server = (struct file *)dev;	/* never dereferenced */
	return 0;
}

/* Start a load of @index as a fault does: under its entry lock. */
static struct vmcoh_req *test_start(struct kunit *test, pgoff_t index)
{
	struct vmcoh_dev *dev = test->priv;
	struct vmcoh_req *load;
	void *entry;

	KUNIT_ASSERT_EQ(test, vmcoh_entry_grab(dev, index, &entry), 0);
	load = vmcoh_load_start(dev, index, xa_to_value(entry));
	KUNIT_ASSERT_NOT_ERR_OR_NULL(test, load);
	return load;
}

/* Take @load out of the server's hands, as REPLY does before it answers. */
static void test_take(struct kunit *test, struct vmcoh_req *load)
{
	struct vmcoh_dev *dev = test->priv;

	xa_lock(&dev->backing.inflight);
	KUNIT_ASSERT_PTR_EQ(test, __xa_erase(&dev->backing.inflight, load->id),
			    (void *)load);
	list_del_init(&load->queued);
	xa_unlock(&dev->backing.inflight);
}

static u64 count(struct vmcoh_dev *dev, enum vmcoh_counter counter)
{
	return vmcoh_counter_read(dev, counter);
}

/*
 * A load is a state of the entry: whoever grabs the index gets the load,
 * not a lock; the answer becomes resident and the entry goes away.
 */
static void backing_answer_is_installed_and_shared(struct kunit *test)
{
	struct vmcoh_dev *dev = test->priv;
	struct vmcoh_req *load = test_start(test, 3), *other;
	struct page *block;
	void *entry;

	KUNIT_EXPECT_PTR_EQ(test, xa_load(&dev->entries.xa, 3), (void *)load);
	KUNIT_EXPECT_EQ(test, count(dev, VMCOH_LOADS), 1ULL);
	KUNIT_EXPECT_EQ(test, vmcoh_entry_grab(dev, 3, &entry), VMCOH_LOADING);
	other = entry;
	KUNIT_EXPECT_PTR_EQ(test, other, load);

	block = vmcoh_block_new(dev);
	KUNIT_ASSERT_NOT_ERR_OR_NULL(test, block);
	test_take(test, load);
	vmcoh_load_finish(load, &block, 0);
	KUNIT_EXPECT_EQ(test, vmcoh_req_wait(dev, other, other->index), 0);
	KUNIT_EXPECT_EQ(test, vmcoh_req_wait(dev, load, load->index), 0);
	KUNIT_EXPECT_PTR_EQ(test, vmcoh_block_lookup(&dev->map, 3), block);
	KUNIT_EXPECT_NULL(test, xa_load(&dev->entries.xa, 3));
	KUNIT_EXPECT_EQ(test, count(dev, VMCOH_LOADS_PUBLISHED), 1ULL);
}

/*
 * Invalidation does not wait for a load (LOADING_INVALIDATED): it removes
 * the entry, and the answer, however good, is dropped.
 */
static void backing_invalidated_answer_is_dropped(struct kunit *test)
{
	struct vmcoh_dev *dev = test->priv;
	struct vmcoh_req *load = test_start(test, 5);
	struct page *block = vmcoh_block_new(dev);

	KUNIT_ASSERT_NOT_ERR_OR_NULL(test, block);
	KUNIT_EXPECT_EQ(test, vmcoh_entries_remove(dev, 0, ULONG_MAX), 0UL);
	KUNIT_EXPECT_EQ(test, count(dev, VMCOH_ENTRY_LOCK_WAITS), 0ULL);
	KUNIT_EXPECT_NULL(test, xa_load(&dev->entries.xa, 5));

	test_take(test, load);
	vmcoh_load_finish(load, &block, 0);
	KUNIT_EXPECT_EQ(test, vmcoh_req_wait(dev, load, load->index), 0);
	KUNIT_EXPECT_NULL(test, vmcoh_block_lookup(&dev->map, 5));
	KUNIT_EXPECT_EQ(test, count(dev, VMCOH_LOADS_INVALIDATED), 1ULL);
	KUNIT_EXPECT_EQ(test, atomic_long_read(&dev->map.nr_blocks), 0L);
}

/* The server's INVALIDATE starts by cancelling loads, and only loads. */
static void backing_cancel_loads_leaves_other_entries(struct kunit *test)
{
	struct vmcoh_dev *dev = test->priv;
	struct vmcoh_req *load;

	vmcoh_test_put_entry(test, dev, 1, 0);
	vmcoh_test_put_entry(test, dev, 2, ZERO);
	load = test_start(test, 4);
	vmcoh_entries_cancel_loads(dev, 0, ULONG_MAX);
	KUNIT_EXPECT_PTR_EQ(test, xa_load(&dev->entries.xa, 1), xa_mk_value(0));
	KUNIT_EXPECT_EQ(test, vmcoh_test_entry(dev, 2), (unsigned long)ZERO);
	KUNIT_EXPECT_NULL(test, xa_load(&dev->entries.xa, 4));

	/* A timeout takes it from the server; it ends without an error. */
	vmcoh_server_cancel(dev, load, -ETIMEDOUT);
	KUNIT_EXPECT_EQ(test, vmcoh_req_wait(dev, load, load->index), 0);
	KUNIT_EXPECT_EQ(test, count(dev, VMCOH_LOAD_TIMEOUTS), 1ULL);
	KUNIT_EXPECT_TRUE(test, xa_empty(&dev->backing.inflight));
	vmcoh_entries_remove(dev, 0, ULONG_MAX);
}

/* A load that fails while wanted fails its waiters, and leaves no entry. */
static void backing_failed_load_fails_its_waiters(struct kunit *test)
{
	struct vmcoh_dev *dev = test->priv;
	struct vmcoh_req *load = test_start(test, 6);

	vmcoh_server_cancel(dev, load, -ETIMEDOUT);
	KUNIT_EXPECT_EQ(test, vmcoh_req_wait(dev, load, load->index), -EIO);
	KUNIT_EXPECT_NULL(test, xa_load(&dev->entries.xa, 6));
	KUNIT_EXPECT_EQ(test, count(dev, VMCOH_LOADS_FAILED), 1ULL);

	/* With no server, a load fails as soon as it starts. */
	dev->backing.state = VMCOH_BACKING_ORPHANED;
	load = test_start(test, 7);
	KUNIT_EXPECT_EQ(test, vmcoh_req_wait(dev, load, load->index), -EIO);
	KUNIT_EXPECT_NULL(test, xa_load(&dev->entries.xa, 7));
	KUNIT_EXPECT_EQ(test, count(dev, VMCOH_LOADS), 1ULL);
}

/* An answer for an index cut by a shrink meanwhile is not installed. */
static void backing_answer_beyond_eof_is_dropped(struct kunit *test)
{
	struct vmcoh_dev *dev = test->priv;
	struct vmcoh_req *load = test_start(test, 12);
	struct vmcoh_block_list list = { };
	struct page *block = vmcoh_block_new(dev);

	KUNIT_ASSERT_NOT_ERR_OR_NULL(test, block);
	vmcoh_blockmap_set_size(dev, 8 << PAGE_SHIFT, &list);
	test_take(test, load);
	vmcoh_load_finish(load, &block, 0);
	KUNIT_EXPECT_EQ(test, vmcoh_req_wait(dev, load, load->index), 0);
	KUNIT_EXPECT_NULL(test, vmcoh_block_lookup(&dev->map, 12));
	KUNIT_EXPECT_EQ(test, atomic_long_read(&dev->map.nr_blocks), 0L);
}

/* Answer @load, taken from the server, with blocks filled with @fill. */
static void test_answer(struct kunit *test, struct vmcoh_req *load, int fill)
{
	struct vmcoh_dev *dev = test->priv;
	struct page **blocks;
	unsigned int i;

	blocks = kunit_kcalloc(test, load->nr, sizeof(*blocks), GFP_KERNEL);
	KUNIT_ASSERT_NOT_NULL(test, blocks);
	for (i = 0; i < load->nr; i++) {
		blocks[i] = vmcoh_block_new(dev);
		KUNIT_ASSERT_NOT_ERR_OR_NULL(test, blocks[i]);
		memset_page(blocks[i], 0, fill, PAGE_SIZE);
	}
	test_take(test, load);
	vmcoh_load_finish(load, blocks, 0);
}

/*
 * A server that takes runs is asked for the aligned VMCOH_LOAD_RUN_MIN
 * blocks around a miss, but only for the indices that have neither a block
 * nor an entry, on both sides of the miss without a gap: a resident block
 * or an entry (a mapped one, a lock, another load) ends the run.
 */
static void backing_run_takes_absent_neighbours(struct kunit *test)
{
	struct vmcoh_dev *dev = test->priv;
	struct vmcoh_req *load;
	struct page *block = vmcoh_block_new(dev);
	bool ours;
	pgoff_t i;

	dev->backing.regions = true;
	KUNIT_ASSERT_NOT_ERR_OR_NULL(test, block);
	KUNIT_ASSERT_PTR_EQ(test, vmcoh_block_publish(dev, 4, block, &ours),
			    block);
	vmcoh_test_put_entry(test, dev, 12, 0);
	load = test_start(test, 10);
	KUNIT_EXPECT_EQ(test, load->index, 5UL);
	KUNIT_EXPECT_EQ(test, load->nr, 7U);
	for (i = 5; i <= 11; i++)
		KUNIT_EXPECT_PTR_EQ(test, xa_load(&dev->entries.xa, i),
				    (void *)load);
	KUNIT_EXPECT_NULL(test, xa_load(&dev->entries.xa, 4));
	KUNIT_EXPECT_NULL(test, xa_load(&dev->entries.xa, 13));

	test_answer(test, load, 0x33);
	KUNIT_EXPECT_EQ(test, vmcoh_req_wait(dev, load, 10), 0);
	for (i = 5; i <= 11; i++)
		KUNIT_EXPECT_NOT_NULL(test, vmcoh_block_lookup(&dev->map, i));
	KUNIT_EXPECT_EQ(test, count(dev, VMCOH_LOADS), 1ULL);
	KUNIT_EXPECT_EQ(test, count(dev, VMCOH_LOAD_BLOCKS), 7ULL);
	KUNIT_EXPECT_EQ(test, count(dev, VMCOH_LOADS_PUBLISHED), 7ULL);
	vmcoh_entries_remove(dev, 0, ULONG_MAX);
}

/*
 * An invalidation of part of a run discards the answer for that part
 * only, and if the load then fails, only the waiters of indices that still
 * wanted it fail: the others load again.
 */
static void backing_run_is_invalidated_in_part(struct kunit *test)
{
	struct vmcoh_dev *dev = test->priv;
	struct vmcoh_req *load;
	pgoff_t i;

	dev->backing.regions = true;
	load = test_start(test, 3);
	KUNIT_ASSERT_EQ(test, load->nr, (unsigned int)VMCOH_LOAD_RUN_MIN);
	KUNIT_EXPECT_EQ(test, vmcoh_entries_remove(dev, 4, 7), 0UL);
	vmcoh_req_get(load);
	test_answer(test, load, 0x44);
	KUNIT_EXPECT_EQ(test, vmcoh_req_wait(dev, load, 5), 0);
	KUNIT_EXPECT_EQ(test, vmcoh_req_wait(dev, load, 3), 0);
	for (i = 0; i < VMCOH_LOAD_RUN_MIN; i++)
		KUNIT_EXPECT_EQ(test, !vmcoh_block_lookup(&dev->map, i),
				i >= 4 && i <= 7);
	KUNIT_EXPECT_EQ(test, count(dev, VMCOH_LOADS_INVALIDATED), 4ULL);
	KUNIT_EXPECT_EQ(test, count(dev, VMCOH_LOADS_PUBLISHED),
			VMCOH_LOAD_RUN_MIN - 4ULL);

	/* The next miss, at 4, is no longer sequential: a run of its own. */
	load = test_start(test, 4);
	KUNIT_EXPECT_EQ(test, load->index, 4UL);
	KUNIT_EXPECT_EQ(test, load->nr, 4U);
	vmcoh_entries_cancel_loads(dev, 6, 6);
	vmcoh_req_get(load);
	vmcoh_server_cancel(dev, load, -ETIMEDOUT);
	KUNIT_EXPECT_EQ(test, vmcoh_req_wait(dev, load, 6), 0);
	KUNIT_EXPECT_EQ(test, vmcoh_req_wait(dev, load, 4), -EIO);
	KUNIT_EXPECT_EQ(test, count(dev, VMCOH_LOADS_FAILED), 3ULL);
}

/* A miss right after the previous run loads twice as much, to the region. */
static void backing_run_grows_on_sequential_misses(struct kunit *test)
{
	struct vmcoh_dev *dev = test->priv;
	const pgoff_t region = VMCOH_LOAD_RUN_MAX;
	pgoff_t next = 0, want = VMCOH_LOAD_RUN_MIN;
	struct vmcoh_block_list list = { };
	struct vmcoh_req *load;

	dev->backing.regions = true;
	dev->map.max_blocks = 2 * region;
	vmcoh_blockmap_set_size(dev, (2 * region) << PAGE_SHIFT, &list);
	while (next < region) {
		load = test_start(test, next);
		KUNIT_EXPECT_EQ(test, load->index, next);
		KUNIT_EXPECT_EQ(test, (pgoff_t)load->nr,
				min(want, region - next));
		next += load->nr;
		want = min(2 * want, region);
		test_answer(test, load, 0x55);
		KUNIT_EXPECT_EQ(test, vmcoh_req_wait(dev, load, load->index),
				0);
	}
	/*
	 * A miss elsewhere, then one at the next region's start: no longer
	 * right after the last run, but after a region of resident blocks,
	 * as a pass that read the first region without missing meets it.  The
	 * region, up to the blocks the first miss brought in.
	 */
	load = test_start(test, region + 100);
	KUNIT_EXPECT_EQ(test, load->index, region + 96);
	test_answer(test, load, 0x55);
	KUNIT_EXPECT_EQ(test, vmcoh_req_wait(dev, load, region + 100), 0);
	load = test_start(test, region);
	KUNIT_EXPECT_EQ(test, load->index, region);
	KUNIT_EXPECT_EQ(test, load->nr, 96U);
	test_answer(test, load, 0x55);
	KUNIT_EXPECT_EQ(test, vmcoh_req_wait(dev, load, region), 0);

	/* After those, and the first miss's 16: the rest of the region. */
	load = test_start(test, region + 112);
	KUNIT_EXPECT_EQ(test, (pgoff_t)load->nr, region - 112);
	test_answer(test, load, 0x55);
	KUNIT_EXPECT_EQ(test, vmcoh_req_wait(dev, load, region + 112), 0);
	KUNIT_EXPECT_EQ(test, atomic_long_read(&dev->map.nr_blocks),
			2L * region);
}

static long test_op_writeback(struct vmcoh_test_worker *w)
{
	return vmcoh_writeback(w->dev, w->first, w->last);
}

/* A dirty block at @index holding @fill, and a writable server. */
static struct page *test_dirty_block(struct kunit *test, pgoff_t index,
				     int fill)
{
	struct vmcoh_dev *dev = test->priv;
	struct page *block = vmcoh_block_new(dev);
	bool ours;

	KUNIT_ASSERT_NOT_ERR_OR_NULL(test, block);
	memset_page(block, 0, fill, PAGE_SIZE);
	KUNIT_ASSERT_PTR_EQ(test, vmcoh_block_publish(dev, index, block, &ours),
			    block);
	KUNIT_ASSERT_TRUE(test, vmcoh_block_mark_dirty(dev, index, block));
	dev->backing.writable = true;
	return block;
}

/* The STORE writeback sent for @index, taken as REPLY takes it. */
static struct vmcoh_req *test_take_store(struct kunit *test, pgoff_t index)
{
	struct vmcoh_dev *dev = test->priv;
	struct vmcoh_req *store;
	unsigned long id = 0;

	KUNIT_ASSERT_TRUE(test, vmcoh_test_wait_counter(dev, VMCOH_STORES, 1));
	store = xa_find(&dev->backing.inflight, &id, U32_MAX, XA_PRESENT);
	KUNIT_ASSERT_NOT_ERR_OR_NULL(test, store);
	KUNIT_EXPECT_EQ(test, store->op, (u32)VMCOH_REQ_STORE);
	KUNIT_EXPECT_EQ(test, store->index, index);
	test_take(test, store);
	return store;
}

/*
 * Writeback clears the mark under the entry lock before it copies, and
 * waits for the answer holding no entry lock: the block may be dirtied
 * again meanwhile, and stays dirty.  The STORE references the block until
 * it ends, and not a moment longer, though the request may live on: a
 * window gives a range back only when nothing references its pages.
 */
static void backing_writeback_copies_and_cleans(struct kunit *test)
{
	struct vmcoh_dev *dev = test->priv;
	struct page *block = test_dirty_block(test, 6, 0x5a);
	int refs = page_count(block);
	struct vmcoh_test_worker *w;
	struct vmcoh_req *store;
	u8 *data;

	w = vmcoh_test_worker_start(test, dev, test_op_writeback, 0, 15, 0);
	store = test_take_store(test, 6);
	KUNIT_EXPECT_EQ(test, page_count(block), refs + 1);
	KUNIT_EXPECT_EQ(test, atomic_long_read(&dev->map.nr_dirty), 0L);
	data = kmap_local_page(store->copies[0]);
	KUNIT_EXPECT_EQ(test, data[0], 0x5a);
	KUNIT_EXPECT_EQ(test, data[PAGE_SIZE - 1], 0x5a);
	kunmap_local(data);
	KUNIT_EXPECT_TRUE(test, vmcoh_block_mark_dirty(dev, 6, block));
	KUNIT_EXPECT_FALSE(test, vmcoh_test_worker_done(w));

	vmcoh_req_get(store);
	vmcoh_store_finish(store, 0);
	KUNIT_EXPECT_EQ(test, vmcoh_test_worker_wait(test, w), 0L);
	KUNIT_EXPECT_EQ(test, atomic_long_read(&dev->map.nr_dirty), 1L);
	KUNIT_EXPECT_EQ(test, page_count(block), refs);
	vmcoh_req_put(store);
}

/* A STORE the server did not keep leaves its block dirty, and fails. */
static void backing_failed_store_dirties_again(struct kunit *test)
{
	struct vmcoh_dev *dev = test->priv;
	struct vmcoh_test_worker *w;

	test_dirty_block(test, 2, 0x11);
	w = vmcoh_test_worker_start(test, dev, test_op_writeback, 0, 15, 0);
	vmcoh_store_finish(test_take_store(test, 2), -EIO);
	KUNIT_EXPECT_EQ(test, vmcoh_test_worker_wait(test, w), (long)-EIO);
	KUNIT_EXPECT_EQ(test, atomic_long_read(&dev->map.nr_dirty), 1L);
	KUNIT_EXPECT_EQ(test, count(dev, VMCOH_STORES_FAILED), 1ULL);
}

/*
 * A server that takes runs is sent one STORE for each run of dirty blocks
 * in a row, never across a region: blocks 3 to 5 and 7, and 511 and 512 on
 * either side of a region's end, go in four STOREs, each with its blocks'
 * contents in order.  A run the server did not keep is dirty again, whole.
 */
static void backing_writeback_sends_runs(struct kunit *test)
{
	static const pgoff_t dirty[] = { 3, 4, 5, 7, 511, 512 };
	static const struct {
		pgoff_t index;
		unsigned int nr;
	} runs[] = { { 3, 3 }, { 7, 1 }, { 511, 1 }, { 512, 1 } };
	const pgoff_t region = VMCOH_RANGE_PAGES;
	struct vmcoh_dev *dev = test->priv;
	struct vmcoh_block_list list = { };
	struct vmcoh_test_worker *w;
	struct vmcoh_req *store;
	unsigned int i, j, k;
	unsigned long id;
	u8 *data;

	dev->map.max_blocks = 2 * region;
	vmcoh_blockmap_set_size(dev, (2 * region) << PAGE_SHIFT, &list);
	for (i = 0; i < ARRAY_SIZE(dirty); i++)
		test_dirty_block(test, dirty[i], 0x30 + i);
	dev->backing.store_runs = true;
	w = vmcoh_test_worker_start(test, dev, test_op_writeback, 0,
				    2 * region - 1, 0);
	KUNIT_ASSERT_TRUE(test, vmcoh_test_wait_counter(dev, VMCOH_STORES,
							ARRAY_SIZE(runs)));
	KUNIT_EXPECT_EQ(test, count(dev, VMCOH_STORES), (u64)ARRAY_SIZE(runs));
	for (i = 0, k = 0; i < ARRAY_SIZE(runs); i++) {
		xa_for_each(&dev->backing.inflight, id, store) {
			if (store->index == runs[i].index)
				break;
		}
		KUNIT_ASSERT_NOT_ERR_OR_NULL(test, store);
		KUNIT_EXPECT_EQ(test, store->nr, runs[i].nr);
		for (j = 0; j < store->nr; j++, k++) {
			data = kmap_local_page(store->copies[j]);
			KUNIT_EXPECT_EQ(test, data[0], 0x30 + k);
			KUNIT_EXPECT_EQ(test, data[PAGE_SIZE - 1], 0x30 + k);
			kunmap_local(data);
		}
		test_take(test, store);
		vmcoh_store_finish(store, i ? 0 : -EIO);
	}
	KUNIT_EXPECT_EQ(test, vmcoh_test_worker_wait(test, w), (long)-EIO);
	KUNIT_EXPECT_EQ(test, atomic_long_read(&dev->map.nr_dirty), 3L);
	KUNIT_EXPECT_EQ(test, count(dev, VMCOH_STORES_FAILED), 1ULL);
}

static struct kunit_case vmcoh_backing_cases[] = {
	KUNIT_CASE(backing_answer_is_installed_and_shared),
	KUNIT_CASE(backing_invalidated_answer_is_dropped),
	KUNIT_CASE(backing_cancel_loads_leaves_other_entries),
	KUNIT_CASE(backing_failed_load_fails_its_waiters),
	KUNIT_CASE(backing_answer_beyond_eof_is_dropped),
	KUNIT_CASE(backing_run_takes_absent_neighbours),
	KUNIT_CASE(backing_run_is_invalidated_in_part),
	KUNIT_CASE(backing_run_grows_on_sequential_misses),
	KUNIT_CASE(backing_writeback_copies_and_cleans),
	KUNIT_CASE(backing_failed_store_dirties_again),
	KUNIT_CASE(backing_writeback_sends_runs),
	{}
};

static struct kunit_suite vmcoh_backing_suite = {
	.name = "vmcoh_backing",
	.init = backing_test_init,
	.exit = vmcoh_test_dev_exit,
	.test_cases = vmcoh_backing_cases,
};

kunit_test_suite(vmcoh_backing_suite);
