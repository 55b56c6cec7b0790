// SPDX-License-Identifier: GPL-2.0
/*
 * vmrun_splat: the self-test module of tools/vmrun.  Loading it plants one
 * bug, chosen by bug=, that the runner must report as a splat:
 *
 *   warn     a WARN_ON() (the default; any kernel)
 *   none     nothing: out-of-tree taint and unsigned-module messages must
 *            not count as splats
 *   uaf      a use-after-free read (KASAN)
 *   leak     a kmalloc() whose pointer is dropped (kmemleak, scanned by the
 *            runner after the command)
 *   abba     two mutexes taken in both orders, one after the other (lockdep;
 *            no deadlock happens)
 *   race     two threads writing one variable without a lock (KCSAN)
 *   hang     a task sleeping uninterruptibly for hang_s seconds: lower
 *            /proc/sys/kernel/hung_task_timeout_secs below that first
 *   atomic   a mutex taken inside a spinlock (DEBUG_ATOMIC_SLEEP)
 *
 * warn=0 is the old spelling of bug=none.
 *
 * Lock order: abba takes vmrun_a then vmrun_b, then vmrun_b then vmrun_a, on
 * purpose.  Nothing else here takes a lock.
 */
#include <linux/bug.h>
#include <linux/delay.h>
#include <linux/init.h>
#include <linux/kthread.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/sched.h>
#include <linux/slab.h>
#include <linux/spinlock.h>

static bool warn = true;
module_param(warn, bool, 0444);
MODULE_PARM_DESC(warn, "Old spelling: warn=0 is bug=none (default true)");

static char *bug = "warn";
module_param(bug, charp, 0444);
MODULE_PARM_DESC(bug, "warn, none, uaf, leak, abba, race, hang or atomic (default warn)");

static unsigned int hang_s = 6;
module_param(hang_s, uint, 0444);
MODULE_PARM_DESC(hang_s, "How long bug=hang sleeps, in seconds (default 6)");

static DEFINE_MUTEX(vmrun_a);
static DEFINE_MUTEX(vmrun_b);
static DEFINE_SPINLOCK(vmrun_spin);
static void *vmrun_leaked __maybe_unused;
static unsigned long vmrun_racy;

static noinline void plant_uaf(void)
{
	char *p = kmalloc(64, GFP_KERNEL);

	if (!p)
		return;
	kfree(p);
	pr_info("vmrun_splat: read after free: %d\n", READ_ONCE(p[8]));
}

static noinline void plant_leak(void)
{
	int i;

	/*
	 * Each block is stored, then overwritten: nothing refers to it any
	 * more.  Sixteen of them, because the last pointer may linger in the
	 * exited insmod's cached kernel stack, which kmemleak scans.
	 */
	for (i = 0; i < 16; i++) {
		WRITE_ONCE(vmrun_leaked, kmalloc(128, GFP_KERNEL));
		WRITE_ONCE(vmrun_leaked, NULL);
	}
}

static noinline void plant_abba(void)
{
	mutex_lock(&vmrun_a);
	mutex_lock(&vmrun_b);
	mutex_unlock(&vmrun_b);
	mutex_unlock(&vmrun_a);

	mutex_lock(&vmrun_b);
	mutex_lock(&vmrun_a);
	mutex_unlock(&vmrun_a);
	mutex_unlock(&vmrun_b);
}

static int racer(void *arg)
{
	unsigned long end = jiffies + 2 * HZ;

	while (time_before(jiffies, end)) {
		vmrun_racy++;	/* the data race KCSAN must see */
		cpu_relax();
	}
	return 0;
}

static noinline void plant_race(void)
{
	struct task_struct *t = kthread_run(racer, NULL, "vmrun-racer");

	racer(NULL);
	if (!IS_ERR(t))
		msleep(100);	/* the racer ends by itself within 2 s */
}

static noinline void plant_hang(void)
{
	pr_info("vmrun_splat: sleeping %u s uninterruptibly\n", hang_s);
	schedule_timeout_uninterruptible(hang_s * HZ);
}

static noinline void plant_atomic(void)
{
	spin_lock(&vmrun_spin);
	/* mutex_lock() may sleep: might_sleep() reports it at once. */
	mutex_lock(&vmrun_a);
	mutex_unlock(&vmrun_a);
	spin_unlock(&vmrun_spin);
}

static int __init vmrun_splat_init(void)
{
	if (!warn || !strcmp(bug, "none"))
		return 0;
	if (!strcmp(bug, "warn"))
		WARN_ON(1);
	else if (!strcmp(bug, "uaf"))
		plant_uaf();
	else if (!strcmp(bug, "leak"))
		plant_leak();
	else if (!strcmp(bug, "abba"))
		plant_abba();
	else if (!strcmp(bug, "race"))
		plant_race();
	else if (!strcmp(bug, "hang"))
		plant_hang();
	else if (!strcmp(bug, "atomic"))
		plant_atomic();
	else
		return -EINVAL;
	return 0;
}

static void __exit vmrun_splat_exit(void)
{
}

module_init(vmrun_splat_init);
module_exit(vmrun_splat_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("tools/vmrun self-test: plants one kernel bug on load");
