/* SPDX-License-Identifier: GPL-2.0 */
/*
 * KUnit fixture shared by the vmcoh suites: a private device (block map,
 * entries, counters and an address space nothing maps), separate from
 * /dev/vmcoh, and worker threads that run one blocking operation each so a
 * test can see it sleep and see it wake.
 *
 * Lock order: see vmcoh.h.  The fixture takes no locks of its own; each
 * worker takes what the operation it runs takes.
 */
#ifndef VMCOH_KUNIT_FIXTURE_H
#define VMCOH_KUNIT_FIXTURE_H

#include <kunit/test.h>
#include <linux/completion.h>

#include "../vmcoh.h"

/* How long a test waits for a worker to sleep or to finish: TCG + KASAN. */
#define VMCOH_TEST_TIMEOUT	(20 * HZ)

struct vmcoh_test_dev {
	struct vmcoh_dev dev;
	struct address_space mapping;
};

/*
 * Suite .init/.exit: test->priv is a struct vmcoh_dev of 16 pages.  With an
 * unsafe protocol loaded (test_hooks=1 unsafe=...), every case is skipped.
 */
int vmcoh_test_dev_init(struct kunit *test);
void vmcoh_test_dev_exit(struct kunit *test);

/* Wait until @counter of @dev reaches @target; false on timeout. */
bool vmcoh_test_wait_counter(struct vmcoh_dev *dev,
			     enum vmcoh_counter counter, u64 target);

/* Wait until @n tasks in all have gone to sleep on an entry lock. */
static inline bool vmcoh_test_wait_sleepers(struct vmcoh_dev *dev, u64 n)
{
	return vmcoh_test_wait_counter(dev, VMCOH_ENTRY_LOCK_WAITS, n);
}

struct vmcoh_test_worker;
typedef long (*vmcoh_test_op)(struct vmcoh_test_worker *w);

/*
 * One operation run by a kernel thread.  The test owns the struct: it is
 * freed by vmcoh_test_worker_wait() once the thread is done with it, and
 * deliberately leaked if the thread never finishes (the test has failed,
 * and freeing it would be a use-after-free).
 */
struct vmcoh_test_worker {
	struct vmcoh_dev *dev;
	vmcoh_test_op op;
	pgoff_t first;
	pgoff_t last;
	unsigned long flags;		/* what a grab unlocks with */
	long result;
	void *entry;			/* what a grab found */
	struct completion owned;	/* a grab holds the entry lock */
	struct completion release;	/* ... and waits for this to unlock */
	struct completion done;
};

struct vmcoh_test_worker *vmcoh_test_worker_start(struct kunit *test,
						  struct vmcoh_dev *dev,
						  vmcoh_test_op op,
						  pgoff_t first, pgoff_t last,
						  unsigned long flags);
bool vmcoh_test_worker_done(struct vmcoh_test_worker *w);
/* Wait for the worker; returns its result, or -ETIMEDOUT (and fails). */
long vmcoh_test_worker_wait(struct kunit *test, struct vmcoh_test_worker *w);

/* Operations for workers. */
long vmcoh_test_op_grab_unlock(struct vmcoh_test_worker *w);
long vmcoh_test_op_grab_hold(struct vmcoh_test_worker *w);
long vmcoh_test_op_remove(struct vmcoh_test_worker *w);

/* Put an unlocked entry with @flags at @index, as a finished fault would. */
void vmcoh_test_put_entry(struct kunit *test, struct vmcoh_dev *dev,
			  pgoff_t index, unsigned long flags);
/* The entry at @index as a value (0 if absent). */
unsigned long vmcoh_test_entry(struct vmcoh_dev *dev, pgoff_t index);
/* Publish a new block at @index, filled with @fill. */
struct page *vmcoh_test_add_block(struct kunit *test, struct vmcoh_dev *dev,
				  pgoff_t index, u8 fill);

#endif /* VMCOH_KUNIT_FIXTURE_H */
