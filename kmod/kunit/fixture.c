// SPDX-License-Identifier: GPL-2.0
/*
 * KUnit fixture for the vmcoh suites, see fixture.h.
 *
 * Lock order: see vmcoh.h.  Workers take entry locks and io_rwsem through
 * the functions they test; a worker holds at most one entry lock.
 */

#include <linux/delay.h>
#include <linux/fs.h>
#include <linux/highmem.h>
#include <linux/kthread.h>
#include <linux/slab.h>

#include "../hooks.h"
#include "fixture.h"

#define VMCOH_TEST_PAGES	16

int vmcoh_test_dev_init(struct kunit *test)
{
	struct vmcoh_test_dev *t;

	/*
	 * The suites test the safe protocol.  6.1 runs them while the module
	 * is COMING, before vmcoh_init() turns the test hooks on; 6.6 and
	 * later once it is LIVE, where an unsafe variant would break them
	 * (invalidate_waits_load makes a removal wait for a load that only
	 * the test itself would answer, for ever).
	 */
	if (static_branch_unlikely(&vmcoh_test_hooks) && vmcoh_unsafe_variant)
		kunit_skip(test, "an unsafe protocol is loaded");
	t = kunit_kzalloc(test, sizeof(*t), GFP_KERNEL);
	if (!t)
		return -ENOMEM;
	t->dev.counters = alloc_percpu(struct vmcoh_counters);
	if (!t->dev.counters)
		return -ENOMEM;
	if (vmcoh_entries_init(&t->dev.entries, &vmcoh_entry_loads)) {
		free_percpu(t->dev.counters);
		return -ENOMEM;
	}
	address_space_init_once(&t->mapping);
	t->dev.mapping = &t->mapping;
	t->dev.load_timeout_ms = -1;
	init_rwsem(&t->dev.io_rwsem);
	vmcoh_backing_init(&t->dev.backing);
	vmcoh_blockmap_init(&t->dev.map, VMCOH_TEST_PAGES << PAGE_SHIFT,
			    VMCOH_TEST_PAGES);
	test->priv = &t->dev;
	return 0;
}

void vmcoh_test_dev_exit(struct kunit *test)
{
	struct vmcoh_dev *dev = test->priv;

	if (!dev)
		return;
	/* Also checks that no test left an entry locked. */
	vmcoh_blockmap_destroy(dev);
	vmcoh_entries_destroy(&dev->entries);
	vmcoh_backing_destroy(&dev->backing);
	free_percpu(dev->counters);
}

bool vmcoh_test_wait_counter(struct vmcoh_dev *dev,
			     enum vmcoh_counter counter, u64 target)
{
	unsigned long deadline = jiffies + VMCOH_TEST_TIMEOUT;

	while (vmcoh_counter_read(dev, counter) < target) {
		if (time_after(jiffies, deadline))
			return false;
		usleep_range(1000, 2000);
	}
	return true;
}

static int worker_fn(void *arg)
{
	struct vmcoh_test_worker *w = arg;

	w->result = w->op(w);
	/* The test may free @w as soon as it sees this: touch nothing after. */
	complete(&w->done);
	return 0;
}

struct vmcoh_test_worker *vmcoh_test_worker_start(struct kunit *test,
						  struct vmcoh_dev *dev,
						  vmcoh_test_op op,
						  pgoff_t first, pgoff_t last,
						  unsigned long flags)
{
	struct vmcoh_test_worker *w = kzalloc(sizeof(*w), GFP_KERNEL);
	struct task_struct *task;

	KUNIT_ASSERT_NOT_NULL(test, w);
	w->dev = dev;
	w->op = op;
	w->first = first;
	w->last = last;
	w->flags = flags;
	init_completion(&w->owned);
	init_completion(&w->release);
	init_completion(&w->done);
	task = kthread_run(worker_fn, w, "vmcoh-kunit");
	if (IS_ERR(task)) {
		kfree(w);
		KUNIT_ASSERT_NOT_ERR_OR_NULL(test, task);
	}
	return w;
}

bool vmcoh_test_worker_done(struct vmcoh_test_worker *w)
{
	return completion_done(&w->done);
}

long vmcoh_test_worker_wait(struct kunit *test, struct vmcoh_test_worker *w)
{
	long result;

	if (!wait_for_completion_timeout(&w->done, VMCOH_TEST_TIMEOUT)) {
		KUNIT_FAIL(test, "worker on [%lu, %lu] did not finish",
			   w->first, w->last);
		return -ETIMEDOUT;	/* @w leaks: its thread may still run */
	}
	result = w->result;
	kfree(w);
	return result;
}

long vmcoh_test_op_grab_unlock(struct vmcoh_test_worker *w)
{
	int err = vmcoh_entry_grab(w->dev, w->first, &w->entry);

	if (!err)
		vmcoh_entry_unlock(&w->dev->entries, w->first, w->flags);
	return err;
}

long vmcoh_test_op_grab_hold(struct vmcoh_test_worker *w)
{
	int err = vmcoh_entry_grab(w->dev, w->first, &w->entry);

	if (err)
		return err;
	complete(&w->owned);
	wait_for_completion(&w->release);
	vmcoh_entry_unlock(&w->dev->entries, w->first, w->flags);
	return 0;
}

long vmcoh_test_op_remove(struct vmcoh_test_worker *w)
{
	return vmcoh_entries_remove(w->dev, w->first, w->last);
}

void vmcoh_test_put_entry(struct kunit *test, struct vmcoh_dev *dev,
			  pgoff_t index, unsigned long flags)
{
	void *entry;

	KUNIT_ASSERT_EQ(test, vmcoh_entry_grab(dev, index, &entry), 0);
	vmcoh_entry_unlock(&dev->entries, index, flags);
}

unsigned long vmcoh_test_entry(struct vmcoh_dev *dev, pgoff_t index)
{
	void *entry = xa_load(&dev->entries.xa, index);

	return entry ? xa_to_value(entry) : 0;
}

struct page *vmcoh_test_add_block(struct kunit *test, struct vmcoh_dev *dev,
				  pgoff_t index, u8 fill)
{
	struct page *block = vmcoh_block_new(dev);
	bool ours;

	KUNIT_ASSERT_NOT_ERR_OR_NULL(test, block);
	memset_page(block, 0, fill, PAGE_SIZE);
	KUNIT_ASSERT_PTR_EQ(test, vmcoh_block_publish(dev, index, block, &ours),
			    block);
	return block;
}
