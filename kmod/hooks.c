// SPDX-License-Identifier: GPL-2.0
/*
 * Test hooks, for proving the race harness (test_hooks=1 only).
 *
 * Hold points: userspace arms a named point in the fault path or in
 * invalidation for one page index; the first task to get there parks until
 * userspace releases it, so a test can run the other side of a race in the
 * exact window the seed threads describe.  A park always ends: on release,
 * after its timeout, when the file that armed it is closed, or on a fatal
 * signal.  A parked task keeps whatever locks it holds (an entry lock, or
 * io_rwsem), which is the point.
 *
 * Unsafe variants (unsafe=NAME): the protocol with one step broken the way a
 * real kernel once broke it.  The harness must catch each of them.
 *
 * Fault injection (fail_range_alloc=1|2): the window's allocations of
 * 2 MiB ranges fail, as they do on a fragmented or exhausted machine; and
 * zero_page_max_refs lowers the bound on the zero page's references.
 *
 * Lock order: see vmcoh.h.  hold_lock is a leaf spinlock; parking sleeps
 * with it dropped, in whatever context the hold point is in.
 */

#include <linux/fs.h>
#include <linux/jiffies.h>
#include <linux/module.h>
#include <linux/spinlock.h>
#include <linux/string.h>
#include <linux/uaccess.h>
#include <linux/wait.h>

#include "hooks.h"

DEFINE_STATIC_KEY_FALSE(vmcoh_test_hooks);
unsigned int vmcoh_unsafe_variant = VMCOH_UNSAFE_NONE;

unsigned int vmcoh_zero_page_max_refs = VMCOH_ZERO_PAGE_MAX_REFS;
module_param_named(zero_page_max_refs, vmcoh_zero_page_max_refs, uint, 0644);
MODULE_PARM_DESC(zero_page_max_refs,
		 "With test_hooks=1: a lower bound on the zero page's references than 2^30 (holes beyond it SIGBUS)");

unsigned int vmcoh_fail_range_alloc;
module_param_named(fail_range_alloc, vmcoh_fail_range_alloc, uint, 0644);
MODULE_PARM_DESC(fail_range_alloc,
		 "With test_hooks=1: fail window range allocations, 1 the quick ones, 2 all (default 0)");

static const char * const unsafe_names[VMCOH_NR_UNSAFE] = {
	[VMCOH_UNSAFE_NONE]			= "",
	[VMCOH_UNSAFE_LOOKUP_BEFORE_LOCK]	= "lookup_before_lock",
	[VMCOH_UNSAFE_UNMAP_BEFORE_REMOVE]	= "unmap_before_remove",
	[VMCOH_UNSAFE_NO_SIZE_RECHECK]		= "no_size_recheck",
	[VMCOH_UNSAFE_NO_EVEN_COWS]		= "no_even_cows",
	[VMCOH_UNSAFE_FREE_BEFORE_UNMAP]	= "free_before_unmap",
	[VMCOH_UNSAFE_WRITE_NO_INVALIDATE]	= "write_no_invalidate",
	[VMCOH_UNSAFE_LOAD_AFTER_INVALIDATE]	= "load_after_invalidate",
	[VMCOH_UNSAFE_INVALIDATE_WAITS_LOAD]	= "invalidate_waits_load",
	[VMCOH_UNSAFE_DROP_UNDER_ENTRY_LOCK]	= "drop_under_entry_lock",
	[VMCOH_UNSAFE_DROP_SKIPS_WRITEBACK]	= "drop_skips_writeback",
	[VMCOH_UNSAFE_RECLAIM_IN_FAULT]		= "reclaim_in_fault",
	[VMCOH_UNSAFE_PMD_DOWNGRADE_NO_UNMAP]	= "pmd_downgrade_no_unmap",
	[VMCOH_UNSAFE_WAIT_HOLDING_MMAP_LOCK]	= "wait_holding_mmap_lock",
	[VMCOH_UNSAFE_ZERO_UNMAP_AFTER_PUBLISH]	= "zero_unmap_after_publish",
	[VMCOH_UNSAFE_REUSE_PINNED]		= "reuse_pinned",
	[VMCOH_UNSAFE_NO_STORE_WAIT]		= "no_store_wait",
	[VMCOH_UNSAFE_WB_COPY_BEFORE_UNMAP]	= "writeback_copy_before_unmap",
};

enum hold_state {
	HOLD_DISARMED,
	HOLD_ARMED,
	HOLD_PARKED,
};

struct hold_slot {
	enum hold_state state;
	pgoff_t index;
	u64 ops;			/* VMCOH_HOLD_OP_* mask, 0 = any */
	unsigned long timeout;		/* jiffies a park may last */
	struct file *owner;		/* the file that armed it, */
	fl_owner_t owner_files;		/* through this file table */
	unsigned long parks;		/* which park occupies the slot */
};

static DEFINE_SPINLOCK(hold_lock);
static DECLARE_WAIT_QUEUE_HEAD(hold_wq);	/* parked tasks and waiters */
static struct hold_slot hold_slots[VMCOH_NR_HOLD_POINTS];

static bool hold_is_fault_point(unsigned int point)
{
	return point <= VMCOH_HOLD_FAULT_BEFORE_PTE ||
	       point == VMCOH_HOLD_FAULT_ALLOCATED ||
	       point == VMCOH_HOLD_MKWRITE_LOCKED ||
	       point == VMCOH_HOLD_WRITEBACK_CLEARED;
}

/* Whether park number @park at @slot has been ended by someone else. */
static bool hold_park_ended(struct hold_slot *slot, unsigned long park)
{
	bool ended;

	spin_lock(&hold_lock);
	ended = slot->state != HOLD_PARKED || slot->parks != park;
	spin_unlock(&hold_lock);
	return ended;
}

static void hold_disarm_locked(struct hold_slot *slot)
{
	WRITE_ONCE(slot->state, HOLD_DISARMED);
	slot->owner = NULL;
}

/* Is @slot armed for an index in [@first, @last] and an op of @op_bit? */
static bool hold_armed_locked(struct hold_slot *slot, pgoff_t first,
			      pgoff_t last, u64 op_bit)
	__must_hold(&hold_lock)
{
	return slot->state == HOLD_ARMED && slot->index >= first &&
	       slot->index <= last && (!slot->ops || (slot->ops & op_bit));
}

bool __vmcoh_hold_armed(unsigned int point, pgoff_t first, pgoff_t last)
{
	struct hold_slot *slot = &hold_slots[point];
	bool armed;

	if (READ_ONCE(slot->state) != HOLD_ARMED)
		return false;
	spin_lock(&hold_lock);
	armed = hold_armed_locked(slot, first, last, 0);
	spin_unlock(&hold_lock);
	return armed;
}

void __vmcoh_hold(struct vmcoh_dev *dev, unsigned int point, pgoff_t first,
		  pgoff_t last, u64 op_bit)
{
	struct hold_slot *slot = &hold_slots[point];
	unsigned long timeout, park;
	bool abandoned = false;

	/* Unarmed points stay off hold_lock: it is global. */
	if (READ_ONCE(slot->state) != HOLD_ARMED)
		return;
	spin_lock(&hold_lock);
	if (!hold_armed_locked(slot, first, last, op_bit)) {
		spin_unlock(&hold_lock);
		return;
	}
	WRITE_ONCE(slot->state, HOLD_PARKED);
	park = ++slot->parks;
	timeout = slot->timeout;
	spin_unlock(&hold_lock);

	vmcoh_count(dev, VMCOH_HOLDS_PARKED);
	wake_up_all(&hold_wq);
	wait_event_killable_timeout(hold_wq, hold_park_ended(slot, park),
				    timeout);

	/* Nobody released us: a timeout or a fatal signal ends the park. */
	spin_lock(&hold_lock);
	if (slot->state == HOLD_PARKED && slot->parks == park) {
		hold_disarm_locked(slot);
		abandoned = true;
	}
	spin_unlock(&hold_lock);
	if (abandoned) {
		vmcoh_count(dev, VMCOH_HOLD_TIMEOUTS);
		wake_up_all(&hold_wq);
	}
}

static int hold_copy_in(struct vmcoh_hold *req, void __user *arg)
{
	if (copy_from_user(req, arg, sizeof(*req)))
		return -EFAULT;
	if (req->flags || req->reserved[0] || req->reserved[1] ||
	    req->reserved[2])
		return -EINVAL;
	if (req->point >= VMCOH_NR_HOLD_POINTS ||
	    req->timeout_ms > VMCOH_HOLD_TIMEOUT_MAX_MS)
		return -EINVAL;
	if (req->ops & ~VMCOH_HOLD_OPS_ALL)
		return -EINVAL;
	if (req->ops && hold_is_fault_point(req->point))
		return -EINVAL;
	if (!req->timeout_ms)
		req->timeout_ms = VMCOH_HOLD_TIMEOUT_DEFAULT_MS;
	return 0;
}

static long hold_arm(struct file *file, struct vmcoh_hold *req)
{
	struct hold_slot *slot = &hold_slots[req->point];
	long ret = 0;

	if (req->index > ULONG_MAX)
		return -EINVAL;
	spin_lock(&hold_lock);
	if (slot->state != HOLD_DISARMED) {
		ret = -EBUSY;
	} else {
		WRITE_ONCE(slot->state, HOLD_ARMED);
		slot->index = req->index;
		slot->ops = req->ops;
		slot->timeout = msecs_to_jiffies(req->timeout_ms);
		slot->owner = file;
		slot->owner_files = current->files;
	}
	spin_unlock(&hold_lock);
	return ret;
}

static enum hold_state hold_state(struct hold_slot *slot)
{
	enum hold_state state;

	spin_lock(&hold_lock);
	state = slot->state;
	spin_unlock(&hold_lock);
	return state;
}

static long hold_wait(struct vmcoh_hold *req)
{
	struct hold_slot *slot = &hold_slots[req->point];
	long left;

	left = wait_event_interruptible_timeout(hold_wq,
						hold_state(slot) != HOLD_ARMED,
						msecs_to_jiffies(req->timeout_ms));
	if (left < 0)
		return -EINTR;
	switch (hold_state(slot)) {
	case HOLD_PARKED:
		return 0;
	case HOLD_ARMED:
		return -ETIMEDOUT;
	default:
		return -ENOENT;
	}
}

/*
 * Let the task parked at @slot go, or disarm it; either way the slot can be
 * armed again at once.  Called under hold_lock.
 */
static int hold_release_locked(struct hold_slot *slot)
{
	int parked = slot->state == HOLD_PARKED;

	hold_disarm_locked(slot);
	return parked;
}

static long hold_release(struct vmcoh_hold *req)
{
	long ret;

	spin_lock(&hold_lock);
	ret = hold_release_locked(&hold_slots[req->point]);
	spin_unlock(&hold_lock);
	wake_up_all(&hold_wq);
	return ret;
}

/*
 * An abandoned point must never keep a task parked: when the process that
 * armed points through @file closes it (or exits), release them.  ->flush,
 * not ->release, because the parked task may hold a reference to the same
 * file (a child forked after the open), which would delay ->release until
 * the park times out.
 */
void vmcoh_hooks_flush_file(struct file *file, fl_owner_t id)
{
	int i;

	if (!static_branch_unlikely(&vmcoh_test_hooks))
		return;
	spin_lock(&hold_lock);
	for (i = 0; i < VMCOH_NR_HOLD_POINTS; i++)
		if (hold_slots[i].owner == file &&
		    hold_slots[i].owner_files == id)
			hold_release_locked(&hold_slots[i]);
	spin_unlock(&hold_lock);
	wake_up_all(&hold_wq);
}

long vmcoh_ioctl_hold(struct file *file, unsigned int cmd, void __user *arg)
{
	struct vmcoh_hold req;
	int err;

	if (!static_branch_unlikely(&vmcoh_test_hooks))
		return -EPERM;
	err = hold_copy_in(&req, arg);
	if (err)
		return err;
	switch (cmd) {
	case VMCOH_IOC_HOLD_ARM:
		return hold_arm(file, &req);
	case VMCOH_IOC_HOLD_WAIT:
		return hold_wait(&req);
	default:
		return hold_release(&req);
	}
}

int vmcoh_hooks_init(bool enable, const char *unsafe)
{
	unsigned int i;

	if (!unsafe || !*unsafe)
		goto out;
	for (i = 1; i < VMCOH_NR_UNSAFE; i++)
		if (sysfs_streq(unsafe, unsafe_names[i]))
			break;
	if (i == VMCOH_NR_UNSAFE) {
		pr_err("vmcoh: unknown unsafe variant '%s'\n", unsafe);
		return -EINVAL;
	}
	if (!enable) {
		pr_err("vmcoh: unsafe=%s needs test_hooks=1\n", unsafe);
		return -EINVAL;
	}
	vmcoh_unsafe_variant = i;
	pr_warn("vmcoh: loaded with the broken protocol unsafe=%s, for proving the harness only\n",
		unsafe_names[i]);
out:
	if (enable)
		static_branch_enable(&vmcoh_test_hooks);
	return 0;
}

void vmcoh_hooks_exit(void)
{
	if (static_branch_unlikely(&vmcoh_test_hooks))
		static_branch_disable(&vmcoh_test_hooks);
	vmcoh_unsafe_variant = VMCOH_UNSAFE_NONE;
}
