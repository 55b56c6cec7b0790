// SPDX-License-Identifier: GPL-2.0
/*
 * KUnit: the entry-lock state machine (entry.c).
 *
 * Each case drives grab/unlock/remove from the test thread and from
 * workers, and tells that a worker sleeps on an entry from the
 * ENTRY_LOCK_WAITS counter, which a waiter bumps after it has queued itself
 * under xa_lock: from then on, an unlock cannot be missed by it.
 *
 * Lock order: see vmcoh.h.  The test thread waits for an entry lock only
 * while it holds none, and never holds one while it waits for a worker to
 * take another; it may trylock a batch while holding one, as fault-around
 * does.
 */

#include <linux/delay.h>

#include "fixture.h"

#define LOCKED	VMCOH_ENTRY_LOCKED
#define ZERO	VMCOH_ENTRY_ZERO
#define EMPTY	VMCOH_ENTRY_EMPTY
#define PMD	VMCOH_ENTRY_PMD
#define REGION	VMCOH_RANGE_PAGES

/* An absent entry is created locked and EMPTY; unlocking EMPTY removes it. */
static void entry_grab_absent_creates_locked_empty(struct kunit *test)
{
	struct vmcoh_dev *dev = test->priv;
	void *entry;

	KUNIT_ASSERT_EQ(test, vmcoh_entry_grab(dev, 5, &entry), 0);
	KUNIT_EXPECT_EQ(test, xa_to_value(entry), EMPTY);
	KUNIT_EXPECT_EQ(test, vmcoh_test_entry(dev, 5), LOCKED | EMPTY);
	vmcoh_entry_unlock(&dev->entries, 5, EMPTY);
	KUNIT_EXPECT_NULL(test, xa_load(&dev->entries.xa, 5));
}

/* Unlock stores the new flags; the next grab sees them and keeps them. */
static void entry_unlock_stores_flags(struct kunit *test)
{
	struct vmcoh_dev *dev = test->priv;
	void *entry;

	vmcoh_test_put_entry(test, dev, 3, ZERO);
	KUNIT_EXPECT_EQ(test, vmcoh_test_entry(dev, 3), ZERO);
	KUNIT_ASSERT_EQ(test, vmcoh_entry_grab(dev, 3, &entry), 0);
	KUNIT_EXPECT_EQ(test, xa_to_value(entry), ZERO);
	KUNIT_EXPECT_EQ(test, vmcoh_test_entry(dev, 3), LOCKED | ZERO);
	/* A block replaced the zero page. */
	vmcoh_entry_unlock(&dev->entries, 3, 0);
	KUNIT_EXPECT_PTR_EQ(test, xa_load(&dev->entries.xa, 3), xa_mk_value(0));
	KUNIT_EXPECT_EQ(test, vmcoh_counter_read(dev, VMCOH_ENTRY_LOCK_WAITS),
			0ULL);
}

/* A grab of a locked entry sleeps until the owner unlocks, then owns it. */
static void entry_grab_waits_for_unlock(struct kunit *test)
{
	struct vmcoh_dev *dev = test->priv;
	struct vmcoh_test_worker *w;
	void *entry;

	KUNIT_ASSERT_EQ(test, vmcoh_entry_grab(dev, 7, &entry), 0);
	w = vmcoh_test_worker_start(test, dev, vmcoh_test_op_grab_unlock, 7, 7,
				    ZERO);
	KUNIT_EXPECT_TRUE(test, vmcoh_test_wait_sleepers(dev, 1));
	KUNIT_EXPECT_FALSE(test, vmcoh_test_worker_done(w));
	vmcoh_entry_unlock(&dev->entries, 7, 0);
	KUNIT_ASSERT_EQ(test, vmcoh_test_worker_wait(test, w), 0L);
	/* The worker found what we stored, and left what it stored. */
	KUNIT_EXPECT_EQ(test, vmcoh_test_entry(dev, 7), ZERO);
}

/* Other indices are independent: holding 5 does not block a grab of 6. */
static void entry_other_index_does_not_wait(struct kunit *test)
{
	struct vmcoh_dev *dev = test->priv;
	struct vmcoh_test_worker *w;
	void *entry;

	KUNIT_ASSERT_EQ(test, vmcoh_entry_grab(dev, 5, &entry), 0);
	w = vmcoh_test_worker_start(test, dev, vmcoh_test_op_grab_unlock, 6, 6,
				    EMPTY);
	KUNIT_EXPECT_EQ(test, vmcoh_test_worker_wait(test, w), 0L);
	KUNIT_EXPECT_EQ(test, vmcoh_counter_read(dev, VMCOH_ENTRY_LOCK_WAITS),
			0ULL);
	vmcoh_entry_unlock(&dev->entries, 5, EMPTY);
}

/*
 * Unlock hands the lock to one exclusive waiter: the other stays asleep (no
 * thundering herd) until the new owner unlocks in turn.
 */
static void entry_unlock_wakes_one_grabber(struct kunit *test)
{
	struct vmcoh_dev *dev = test->priv;
	unsigned long deadline = jiffies + VMCOH_TEST_TIMEOUT;
	struct vmcoh_test_worker *a, *b, *first, *second;
	unsigned long owned;
	void *entry;

	KUNIT_ASSERT_EQ(test, vmcoh_entry_grab(dev, 9, &entry), 0);
	a = vmcoh_test_worker_start(test, dev, vmcoh_test_op_grab_hold, 9, 9,
				    ZERO);
	b = vmcoh_test_worker_start(test, dev, vmcoh_test_op_grab_hold, 9, 9,
				    ZERO);
	KUNIT_ASSERT_TRUE(test, vmcoh_test_wait_sleepers(dev, 2));
	vmcoh_entry_unlock(&dev->entries, 9, 0);

	/* Exactly one of them owns the entry now. */
	first = NULL;
	while (!first && time_before(jiffies, deadline)) {
		if (completion_done(&a->owned))
			first = a;
		else if (completion_done(&b->owned))
			first = b;
		else
			usleep_range(1000, 2000);
	}
	KUNIT_ASSERT_NOT_NULL(test, first);
	second = first == a ? b : a;
	msleep(50);
	KUNIT_EXPECT_FALSE(test, completion_done(&second->owned));
	/* A woken waiter that found the entry locked again would wait again. */
	KUNIT_EXPECT_EQ(test, vmcoh_counter_read(dev, VMCOH_ENTRY_LOCK_WAITS),
			2ULL);
	KUNIT_EXPECT_EQ(test, xa_to_value(first->entry), 0UL);

	/* Its unlock hands the entry, with its flags, to the other. */
	complete(&first->release);
	KUNIT_EXPECT_EQ(test, vmcoh_test_worker_wait(test, first), 0L);
	owned = wait_for_completion_timeout(&second->owned,
					    VMCOH_TEST_TIMEOUT);
	KUNIT_ASSERT_NE(test, owned, 0UL);
	KUNIT_EXPECT_EQ(test, xa_to_value(second->entry), ZERO);
	complete(&second->release);
	KUNIT_EXPECT_EQ(test, vmcoh_test_worker_wait(test, second), 0L);
	KUNIT_EXPECT_EQ(test, vmcoh_test_entry(dev, 9), ZERO);
}

/*
 * Removal waits for a locked entry, and removes it once it is unlocked: a
 * fault in flight finishes installing its PTE before the unmap that follows.
 */
static void entry_remove_waits_for_locked(struct kunit *test)
{
	struct vmcoh_dev *dev = test->priv;
	struct vmcoh_test_worker *w;
	void *entry;

	vmcoh_test_put_entry(test, dev, 2, ZERO);
	KUNIT_ASSERT_EQ(test, vmcoh_entry_grab(dev, 4, &entry), 0);
	w = vmcoh_test_worker_start(test, dev, vmcoh_test_op_remove, 0, 10, 0);
	KUNIT_EXPECT_TRUE(test, vmcoh_test_wait_sleepers(dev, 1));
	KUNIT_EXPECT_FALSE(test, vmcoh_test_worker_done(w));
	/* Entries before the locked one are gone already. */
	KUNIT_EXPECT_NULL(test, xa_load(&dev->entries.xa, 2));
	vmcoh_entry_unlock(&dev->entries, 4, 0);
	KUNIT_EXPECT_EQ(test, vmcoh_test_worker_wait(test, w), 2L);
	KUNIT_EXPECT_NULL(test, xa_load(&dev->entries.xa, 4));
}

/*
 * A remover (non-exclusive) and a grabber (exclusive) wait on one entry:
 * one unlock must lead both to finish, whichever of them runs first.
 */
static void entry_unlock_wakes_remover_and_grabber(struct kunit *test)
{
	struct vmcoh_dev *dev = test->priv;
	struct vmcoh_test_worker *remover, *grabber;
	void *entry;

	KUNIT_ASSERT_EQ(test, vmcoh_entry_grab(dev, 8, &entry), 0);
	remover = vmcoh_test_worker_start(test, dev, vmcoh_test_op_remove, 8, 8,
					  0);
	KUNIT_ASSERT_TRUE(test, vmcoh_test_wait_sleepers(dev, 1));
	grabber = vmcoh_test_worker_start(test, dev, vmcoh_test_op_grab_unlock,
					  8, 8, ZERO);
	KUNIT_ASSERT_TRUE(test, vmcoh_test_wait_sleepers(dev, 2));
	vmcoh_entry_unlock(&dev->entries, 8, ZERO);
	/* The grabber leaves ZERO, so the remover removes one entry either way. */
	KUNIT_EXPECT_EQ(test, vmcoh_test_worker_wait(test, remover), 1L);
	KUNIT_EXPECT_EQ(test, vmcoh_test_worker_wait(test, grabber), 0L);
}

/* Removal takes exactly the range it is given, unlocked entries at once. */
static void entry_remove_takes_only_its_range(struct kunit *test)
{
	struct vmcoh_dev *dev = test->priv;
	pgoff_t i;

	for (i = 1; i <= 4; i++)
		vmcoh_test_put_entry(test, dev, i, i % 2 ? ZERO : 0);
	vmcoh_test_put_entry(test, dev, 10, 0);
	KUNIT_EXPECT_EQ(test, vmcoh_entries_remove(dev, 2, 3), 2UL);
	KUNIT_EXPECT_EQ(test, vmcoh_test_entry(dev, 1), ZERO);
	KUNIT_EXPECT_NULL(test, xa_load(&dev->entries.xa, 2));
	KUNIT_EXPECT_NULL(test, xa_load(&dev->entries.xa, 3));
	KUNIT_EXPECT_PTR_EQ(test, xa_load(&dev->entries.xa, 4), xa_mk_value(0));
	KUNIT_EXPECT_EQ(test, vmcoh_entries_remove(dev, 5, ULONG_MAX), 1UL);
	KUNIT_EXPECT_EQ(test, vmcoh_entries_remove(dev, 5, ULONG_MAX), 0UL);
	KUNIT_EXPECT_EQ(test, vmcoh_counter_read(dev, VMCOH_ENTRY_LOCK_WAITS),
			0ULL);
}

/*
 * Removal of a dense range misses no entry across the lock drops of a long
 * walk (see blockmap_shrink_dense_map_misses_nothing): a missed entry is a
 * fault lock that invalidation never waited for.
 */
static void entry_remove_dense_range_misses_nothing(struct kunit *test)
{
	const pgoff_t pages = 4 * VMCOH_WALK_BATCH;
	const pgoff_t keep = 2 * VMCOH_WALK_BATCH;
	struct vmcoh_dev *dev = test->priv;
	unsigned long index = keep;
	pgoff_t i;

	for (i = 0; i < pages; i++)
		vmcoh_test_put_entry(test, dev, i, 0);
	KUNIT_EXPECT_EQ(test, vmcoh_entries_remove(dev, keep, ULONG_MAX),
			(unsigned long)(pages - keep));
	KUNIT_EXPECT_NULL(test, xa_find(&dev->entries.xa, &index, ULONG_MAX,
					XA_PRESENT));
	KUNIT_EXPECT_NOT_NULL(test, xa_load(&dev->entries.xa, keep - 1));
}

/*
 * Fault-around's batch trylock takes unlocked and absent entries in one
 * pass and skips a locked one without waiting; its unlock stores each new
 * value and removes EMPTY entries.
 */
static void entry_trylock_batch_skips_locked_entries(struct kunit *test)
{
	struct vmcoh_dev *dev = test->priv;
	unsigned long flags[BITS_PER_LONG] = { };
	unsigned long locked;
	void *entry;

	vmcoh_test_put_entry(test, dev, 1, ZERO);
	KUNIT_ASSERT_EQ(test, vmcoh_entry_grab(dev, 2, &entry), 0);
	locked = vmcoh_entries_trylock(dev, 0, 0xf, flags);
	KUNIT_EXPECT_EQ(test, locked, 0xbUL);
	KUNIT_EXPECT_EQ(test, flags[0], (unsigned long)EMPTY);
	KUNIT_EXPECT_EQ(test, flags[1], (unsigned long)ZERO);
	KUNIT_EXPECT_EQ(test, flags[3], (unsigned long)EMPTY);
	KUNIT_EXPECT_EQ(test, vmcoh_test_entry(dev, 1), LOCKED | ZERO);
	KUNIT_EXPECT_EQ(test, vmcoh_counter_read(dev, VMCOH_ENTRY_LOCK_WAITS),
			0ULL);
	flags[0] = 0;	/* as if fault-around mapped a block there */
	vmcoh_entries_unlock(&dev->entries, 0, locked, flags);
	KUNIT_EXPECT_PTR_EQ(test, xa_load(&dev->entries.xa, 0), xa_mk_value(0));
	KUNIT_EXPECT_EQ(test, vmcoh_test_entry(dev, 1), ZERO);
	KUNIT_EXPECT_EQ(test, vmcoh_test_entry(dev, 2), LOCKED | EMPTY);
	KUNIT_EXPECT_NULL(test, xa_load(&dev->entries.xa, 3));
	vmcoh_entry_unlock(&dev->entries, 2, EMPTY);
	KUNIT_EXPECT_NULL(test, xa_load(&dev->entries.xa, 2));
}

/*
 * A batch across the boundary of two leaf nodes (56..71): the trylock and
 * the unlock walk along with xas_next() into the next node, and an unlock
 * that removes every entry frees nodes under the walk, which must then
 * find its next index from the root.
 */
static void entry_trylock_batch_crosses_nodes(struct kunit *test)
{
	const pgoff_t first = 56, busy = 58;
	struct vmcoh_dev *dev = test->priv;
	unsigned long flags[BITS_PER_LONG] = { };
	unsigned long locked, index = 0;
	unsigned int i;
	void *entry;

	vmcoh_test_put_entry(test, dev, 64, ZERO);
	vmcoh_test_put_entry(test, dev, 70, 0);
	KUNIT_ASSERT_EQ(test, vmcoh_entry_grab(dev, busy, &entry), 0);
	locked = vmcoh_entries_trylock(dev, first, 0xffff, flags);
	KUNIT_EXPECT_EQ(test, locked, 0xffffUL & ~BIT(busy - first));
	KUNIT_EXPECT_EQ(test, flags[64 - first], (unsigned long)ZERO);
	KUNIT_EXPECT_EQ(test, flags[70 - first], 0UL);
	KUNIT_EXPECT_EQ(test, flags[71 - first], (unsigned long)EMPTY);
	for (i = 0; i < 16; i++)
		flags[i] = i % 2 ? EMPTY : 0;
	vmcoh_entries_unlock(&dev->entries, first, locked, flags);
	for (i = 0; i < 16; i++) {
		if (first + i == busy)
			continue;
		KUNIT_EXPECT_PTR_EQ(test, xa_load(&dev->entries.xa, first + i),
				    i % 2 ? NULL : xa_mk_value(0));
	}

	locked = vmcoh_entries_trylock(dev, first, 0xffff, flags);
	KUNIT_EXPECT_EQ(test, locked, 0xffffUL & ~BIT(busy - first));
	for (i = 0; i < 16; i++)
		flags[i] = EMPTY;
	vmcoh_entries_unlock(&dev->entries, first, locked, flags);
	KUNIT_EXPECT_PTR_EQ(test, xa_find(&dev->entries.xa, &index, ULONG_MAX,
					  XA_PRESENT),
			    xa_mk_value(LOCKED | EMPTY));
	KUNIT_EXPECT_EQ(test, index, busy);
	index = busy + 1;
	KUNIT_EXPECT_NULL(test, xa_find(&dev->entries.xa, &index, ULONG_MAX,
					XA_PRESENT));
	vmcoh_entry_unlock(&dev->entries, busy, EMPTY);
}

/*
 * A 2 MiB entry is one entry for its whole region: every index of it reads
 * it, no index beyond, and removing any part of the region removes it.
 */
static void entry_pmd_grab_covers_its_region(struct kunit *test)
{
	struct vmcoh_dev *dev = test->priv;
	void *entry;

	KUNIT_ASSERT_EQ(test, vmcoh_entry_grab_pmd(dev, REGION, &entry), 0);
	KUNIT_EXPECT_EQ(test, xa_to_value(entry), PMD | EMPTY);
	KUNIT_EXPECT_EQ(test, vmcoh_test_entry(dev, REGION + 300),
			LOCKED | PMD | EMPTY);
	vmcoh_entry_unlock(&dev->entries, REGION, PMD);
	KUNIT_EXPECT_EQ(test, vmcoh_test_entry(dev, REGION), PMD);
	KUNIT_EXPECT_EQ(test, vmcoh_test_entry(dev, 2 * REGION - 1), PMD);
	KUNIT_EXPECT_NULL(test, xa_load(&dev->entries.xa, REGION - 1));
	KUNIT_EXPECT_NULL(test, xa_load(&dev->entries.xa, 2 * REGION));
	KUNIT_EXPECT_EQ(test, vmcoh_entries_remove(dev, REGION + 7, REGION + 7),
			1UL);
	KUNIT_EXPECT_NULL(test, xa_load(&dev->entries.xa, REGION));
	KUNIT_EXPECT_NULL(test, xa_load(&dev->entries.xa, 2 * REGION - 1));
}

/* An index of the region with an entry of its own: the PMD falls back. */
static void entry_pmd_grab_refuses_a_region_with_a_page_entry(struct kunit *test)
{
	struct vmcoh_dev *dev = test->priv;
	void *entry;

	vmcoh_test_put_entry(test, dev, REGION + 3, ZERO);
	KUNIT_EXPECT_EQ(test, vmcoh_entry_grab_pmd(dev, REGION, &entry),
			-EBUSY);
	KUNIT_EXPECT_EQ(test, vmcoh_test_entry(dev, REGION + 3), ZERO);
	KUNIT_EXPECT_NULL(test, xa_load(&dev->entries.xa, REGION));
	/* Other regions are not concerned. */
	KUNIT_ASSERT_EQ(test, vmcoh_entry_grab_pmd(dev, 0, &entry), 0);
	vmcoh_entry_unlock(&dev->entries, 0, EMPTY | PMD);
	KUNIT_EXPECT_NULL(test, xa_load(&dev->entries.xa, 0));
}

/*
 * A grab of one index downgrades the 2 MiB entry around it: the entry is
 * gone from the whole region, and the index gets one of its own.
 */
static void entry_grab_downgrades_a_pmd_entry(struct kunit *test)
{
	struct vmcoh_dev *dev = test->priv;
	void *entry;

	KUNIT_ASSERT_EQ(test, vmcoh_entry_grab_pmd(dev, 0, &entry), 0);
	vmcoh_entry_unlock(&dev->entries, 0, PMD);
	KUNIT_ASSERT_EQ(test, vmcoh_entry_grab(dev, 7, &entry), 0);
	KUNIT_EXPECT_EQ(test, xa_to_value(entry), EMPTY);
	KUNIT_EXPECT_EQ(test, vmcoh_counter_read(dev, VMCOH_PMD_DOWNGRADES),
			1ULL);
	KUNIT_EXPECT_NULL(test, xa_load(&dev->entries.xa, 0));
	KUNIT_EXPECT_NULL(test, xa_load(&dev->entries.xa, 8));
	vmcoh_entry_unlock(&dev->entries, 7, 0);
	KUNIT_EXPECT_EQ(test, vmcoh_test_entry(dev, 7), 0UL);
	/* Now the region has a page's entry: no 2 MiB entry for it. */
	KUNIT_EXPECT_EQ(test, vmcoh_entry_grab_pmd(dev, 0, &entry), -EBUSY);
}

/*
 * A locked 2 MiB entry is the lock of every index of its region: a grab of
 * one of them waits for it, then downgrades it.
 */
static void entry_grab_waits_for_a_locked_pmd_entry(struct kunit *test)
{
	struct vmcoh_dev *dev = test->priv;
	struct vmcoh_test_worker *w;
	void *entry;

	KUNIT_ASSERT_EQ(test, vmcoh_entry_grab_pmd(dev, 0, &entry), 0);
	w = vmcoh_test_worker_start(test, dev, vmcoh_test_op_grab_unlock, 300,
				    300, ZERO);
	KUNIT_EXPECT_TRUE(test, vmcoh_test_wait_sleepers(dev, 1));
	KUNIT_EXPECT_FALSE(test, vmcoh_test_worker_done(w));
	vmcoh_entry_unlock(&dev->entries, 0, PMD);
	KUNIT_ASSERT_EQ(test, vmcoh_test_worker_wait(test, w), 0L);
	KUNIT_EXPECT_EQ(test, vmcoh_counter_read(dev, VMCOH_PMD_DOWNGRADES),
			1ULL);
	KUNIT_EXPECT_EQ(test, vmcoh_test_entry(dev, 300), ZERO);
	KUNIT_EXPECT_NULL(test, xa_load(&dev->entries.xa, 0));
}

static struct kunit_case vmcoh_entry_cases[] = {
	KUNIT_CASE(entry_grab_absent_creates_locked_empty),
	KUNIT_CASE(entry_unlock_stores_flags),
	KUNIT_CASE(entry_grab_waits_for_unlock),
	KUNIT_CASE(entry_other_index_does_not_wait),
	KUNIT_CASE(entry_unlock_wakes_one_grabber),
	KUNIT_CASE(entry_remove_waits_for_locked),
	KUNIT_CASE(entry_unlock_wakes_remover_and_grabber),
	KUNIT_CASE(entry_remove_takes_only_its_range),
	KUNIT_CASE(entry_remove_dense_range_misses_nothing),
	KUNIT_CASE(entry_trylock_batch_skips_locked_entries),
	KUNIT_CASE(entry_trylock_batch_crosses_nodes),
	KUNIT_CASE(entry_pmd_grab_covers_its_region),
	KUNIT_CASE(entry_pmd_grab_refuses_a_region_with_a_page_entry),
	KUNIT_CASE(entry_grab_downgrades_a_pmd_entry),
	KUNIT_CASE(entry_grab_waits_for_a_locked_pmd_entry),
	{}
};

static struct kunit_suite vmcoh_entry_suite = {
	.name = "vmcoh_entry",
	.init = vmcoh_test_dev_init,
	.exit = vmcoh_test_dev_exit,
	.test_cases = vmcoh_entry_cases,
};

kunit_test_suite(vmcoh_entry_suite);
