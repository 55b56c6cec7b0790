// SPDX-License-Identifier: GPL-2.0
/*
 * Entry locks: the "radix tree" layer of vmcoh, modeled on fs/dax.c.
 *
 * Each index that page tables may map has an xarray value entry.  Its low
 * bits are flags:
 *
 *   LOCKED  a task owns the index: it is reading the block map and
 *           installing a PTE for it (the fault path), and nobody may
 *           remove or change the entry until it is unlocked.
 *   PMD     the entry covers the aligned 2 MiB region around its index: a
 *           multi-index entry of order VMCOH_RANGE_ORDER, whose lock is
 *           the lock of every index in it (its waiters wait on the
 *           region's first index).  It exists only where no entry of one
 *           index does, and one PMD may map the whole region from it.
 *   ZERO    the zero page may be mapped at this index; replacing it with a
 *           block must unmap those PTEs first.
 *   EMPTY   the entry exists only to be locked; nothing was mapped from it.
 *
 * An entry with none of ZERO and EMPTY set means a block may be mapped.
 *
 * In a backed object an entry may instead point at a struct vmcoh_req:
 * the block is being loaded from the server (LOADING, see backing.c).  The
 * task that found the block missing under the entry lock trades the lock
 * for the load, so nobody holds the entry while the server works.  Others
 * wanting the index get the load back from vmcoh_entry_grab() and wait for
 * it, not for the entry; invalidation removes the pointer without waiting,
 * which leaves the load LOADING_INVALIDATED: its answer is dropped.
 *
 * Invariant: outside an invalidation in flight, every PTE that maps a page
 * of the object at index i was installed while i's entry was locked, and
 * that entry is still present - except a PTE of a plain object's block,
 * which fault.c maps under the block's page lock ("Page locks").
 * Invalidation (invalidate.c) removes entries before it unmaps, so the
 * unmap that follows catches every PTE built from the block map it
 * replaced; for the exception it waits for each freed block's page lock,
 * and unmaps again if any is mapped.
 *
 * 2 MiB entries (fs/dax.c's PMD entries, made simpler).  A 2 MiB fault
 * locks one with vmcoh_entry_grab_pmd(), which gives up (-EBUSY: the fault
 * falls back to PTEs) if any index of the region has an entry of its own,
 * or a load.  A task that wants one index of a region covered by a 2 MiB
 * entry - a PTE fault, writeback - downgrades it first, in
 * vmcoh_entry_grab(): lock it, unmap the whole region from every page
 * table, remove it, and look again.  Once it is gone the index gets an
 * entry of its own, which keeps the region mapped by PTEs until an
 * invalidation removes it, as in fs/dax.c.  The unmap comes before the
 * removal for the invariant below: without it a PMD would outlive its
 * entry, and an invalidation of another index of the region, finding no
 * entry there, would skip the unmap and leave the PMD mapping the old
 * block (unsafe=pmd_downgrade_no_unmap).  An invalidation that meets a
 * 2 MiB entry removes it whole, and its ranged unmap clears any PMD that
 * overlaps the range: the core never leaves part of a special PMD.
 *
 * Locking: the LOCKED bit is set and cleared under entries.xa_lock, and a
 * waiter tests the bit and queues itself under the same spinlock, so an
 * unlock can never slip between a waiter's test and its sleep.  Unlock wakes
 * one exclusive waiter (the next owner); removal wakes everybody, since each
 * waiter must look the index up again.  Waiters share the xarray's hashed
 * table of wait queues and a wake function that filters on the index.
 *
 * Lock order: see vmcoh.h.  entries.xa_lock nests outside the wait-queue
 * lock and is never held across schedule(); vmcoh_entries_trim() takes it
 * inside i_mmap_rwsem.  A task waits for an entry lock only while it
 * holds none; it may then take more without waiting (the batch of
 * fault-around, vmcoh_entries_trylock(), and of a load's answer,
 * vmcoh_entries_claim_loads()), so no cycle of waiters can form.  No entry
 * lock is held across a user copy.  Lockdep sees the entry lock taken by
 * waiting as one class through entry_lock_map; trylocks cannot deadlock
 * and are not annotated.
 */

#include <linux/hash.h>
#include <linux/lockdep.h>
#include <linux/mm.h>
#include <linux/sched.h>
#include <linux/wait.h>

#include "hooks.h"
#include "trace.h"
#include "vmcoh.h"

#define ENTRY_WAIT_TABLE_BITS	10
#define ENTRY_WAIT_TABLE_SIZE	BIT(ENTRY_WAIT_TABLE_BITS)
/* The indices of a 2 MiB entry: one range, which dev->pmd maps by one PMD. */
#define ENTRY_PMD_COLOUR	(VMCOH_RANGE_PAGES - 1)

#ifdef CONFIG_LOCKDEP
static struct lock_class_key entry_lock_key;
static struct lockdep_map entry_lock_map =
	STATIC_LOCKDEP_MAP_INIT("vmcoh_entry_lock", &entry_lock_key);

static void entry_lockdep_acquire(void)
{
	lock_map_acquire(&entry_lock_map);
}

static void entry_lockdep_acquire_try(void)
{
	lock_map_acquire_try(&entry_lock_map);
}

static void entry_lockdep_release(void)
{
	lock_map_release(&entry_lock_map);
}
#else
static void entry_lockdep_acquire(void) { }
static void entry_lockdep_acquire_try(void) { }
static void entry_lockdep_release(void) { }
#endif

/* The table belongs to one xarray, so the index alone names the entry. */
struct entry_key {
	pgoff_t start;
};

struct entry_waiter {
	wait_queue_entry_t wait;
	struct entry_key key;
};

/*
 * Each entry xarray has its own table of wait queues, so it needs no global
 * state set up first (KUnit's suites run before module init on 6.1).
 */
int vmcoh_entries_init(struct vmcoh_entries *entries,
		       const struct vmcoh_entry_load_ops *load_ops)
{
	int i;

	entries->wait_table = kvmalloc_array(ENTRY_WAIT_TABLE_SIZE,
					     sizeof(*entries->wait_table),
					     GFP_KERNEL);
	if (!entries->wait_table)
		return -ENOMEM;
	for (i = 0; i < ENTRY_WAIT_TABLE_SIZE; i++)
		init_waitqueue_head(&entries->wait_table[i]);
	xa_init_flags(&entries->xa, XA_FLAGS_ACCOUNT);
	entries->load_ops = load_ops;
	return 0;
}

static bool entry_is_locked(void *entry)
{
	return xa_is_value(entry) && (xa_to_value(entry) & VMCOH_ENTRY_LOCKED);
}

static bool entry_is_pmd(void *entry)
{
	return xa_is_value(entry) && (xa_to_value(entry) & VMCOH_ENTRY_PMD);
}

static bool entry_is_load(void *entry)
{
	return entry && !xa_is_value(entry);
}

/* Neither locked nor loading: free to be locked. */
static bool entry_is_free(void *entry)
{
	return !entry || (xa_is_value(entry) && !entry_is_locked(entry));
}

static wait_queue_head_t *entry_waitqueue(struct vmcoh_entries *entries,
					  struct xa_state *xas, void *entry,
					  struct entry_key *key)
{
	pgoff_t start = xas->xa_index;

	/* Every index of a 2 MiB entry must wait on the same key. */
	if (xa_is_value(entry) && (xa_to_value(entry) & VMCOH_ENTRY_PMD))
		start &= ~(pgoff_t)ENTRY_PMD_COLOUR;
	key->start = start;
	return entries->wait_table + hash_long(start, ENTRY_WAIT_TABLE_BITS);
}

static int entry_wake_function(wait_queue_entry_t *wait, unsigned int mode,
			       int sync, void *arg)
{
	struct entry_key *key = arg;
	struct entry_waiter *waiter =
		container_of(wait, struct entry_waiter, wait);

	if (key->start != waiter->key.start)
		return 0;
	return autoremove_wake_function(wait, mode, sync, NULL);
}

static void entry_wake(struct vmcoh_entries *entries, struct xa_state *xas,
		       void *entry, bool all)
{
	struct entry_key key;
	wait_queue_head_t *wq = entry_waitqueue(entries, xas, entry, &key);

	/*
	 * Waiters queue themselves under xa_lock after seeing the entry
	 * locked; our caller changed the entry under xa_lock too, so every
	 * task that could have seen it locked is on the queue by now.
	 */
	if (waitqueue_active(wq))
		__wake_up(wq, TASK_NORMAL, all ? 0 : 1, &key);
}

/*
 * Sleep until the locked entry at xas is unlocked or removed.  Called with
 * xa_lock held; returns with it held and the xa_state reset, so the caller
 * must look the index up again.  @exclusive waiters intend to take the lock
 * and consume the wakeup of an unlock; others see every unlock.
 */
static void entry_wait(struct vmcoh_dev *dev, struct xa_state *xas,
		       void *entry, bool exclusive)
	__must_hold(xas->xa->xa_lock)
{
	struct entry_waiter waiter;
	wait_queue_head_t *wq;
	u64 start = 0;

	init_wait(&waiter.wait);
	waiter.wait.func = entry_wake_function;
	wq = entry_waitqueue(&dev->entries, xas, entry, &waiter.key);
	if (exclusive)
		prepare_to_wait_exclusive(wq, &waiter.wait,
					  TASK_UNINTERRUPTIBLE);
	else
		prepare_to_wait(wq, &waiter.wait, TASK_UNINTERRUPTIBLE);
	vmcoh_count(dev, VMCOH_ENTRY_LOCK_WAITS);
	xas_unlock(xas);
	if (trace_vmcoh_entry_wait_enabled())
		start = ktime_get_ns();
	schedule();
	finish_wait(wq, &waiter.wait);
	if (start)
		trace_vmcoh_entry_wait(xas->xa_index, exclusive,
				       ktime_get_ns() - start);
	xas_reset(xas);
	xas_lock(xas);
}

/*
 * Lock the unlocked entry at @xas, or create it locked and EMPTY if @entry
 * is NULL.  Called with xa_lock held; returns the entry as it was (EMPTY
 * for a new one).  The store may fail for want of memory: see xas_error().
 */
static void *entry_lock_at(struct xa_state *xas, void *entry)
	__must_hold(xas->xa->xa_lock)
{
	if (!entry)
		entry = xa_mk_value(VMCOH_ENTRY_EMPTY);
	xas_store(xas, xa_mk_value(xa_to_value(entry) | VMCOH_ENTRY_LOCKED));
	return entry;
}

/*
 * Store @flags for the locked entry at @xas, removing it if they say EMPTY,
 * and wake its waiters.  Called with xa_lock held.
 */
static void entry_unlock_at(struct vmcoh_entries *entries,
			    struct xa_state *xas, unsigned long flags)
	__must_hold(xas->xa->xa_lock)
{
	bool empty = flags & VMCOH_ENTRY_EMPTY;
	void *old = xas_store(xas, empty ? NULL : xa_mk_value(flags));

	/* Only the owner changes a locked entry; removal waits for it. */
	WARN_ON_ONCE(!old || !entry_is_locked(old));
	entry_wake(entries, xas, old, empty);
}

/*
 * Downgrade the unlocked 2 MiB entry at @xas (see above): lock it, unmap
 * its region, remove it and wake everybody waiting for it.  Called with
 * xa_lock held; returns with it held and @xas reset.
 */
static void entry_downgrade(struct vmcoh_dev *dev, struct xa_state *xas,
			    void *entry)
	__must_hold(xas->xa->xa_lock)
{
	pgoff_t first = xas->xa_index & ~(pgoff_t)ENTRY_PMD_COLOUR;

	/* Stores a value over the entry in place: nothing to allocate. */
	entry_lock_at(xas, entry);
	xas_unlock(xas);
	if (!vmcoh_unsafe(VMCOH_UNSAFE_PMD_DOWNGRADE_NO_UNMAP))
		unmap_mapping_pages(dev->mapping, first, VMCOH_RANGE_PAGES,
				    false);
	vmcoh_count(dev, VMCOH_PMD_DOWNGRADES);
	xas_reset(xas);
	xas_lock(xas);
	xas_load(xas);
	entry_unlock_at(&dev->entries, xas, VMCOH_ENTRY_EMPTY);
	xas_reset(xas);
}

/**
 * vmcoh_entry_grab - lock the entry of @index, creating it if absent
 * @dev: the device
 * @index: page index in the object
 * @entryp: returns the entry's value as it was before we locked it
 *
 * Sleeps while another task holds the entry.  An absent entry is created
 * as a locked EMPTY entry, so the lock exists before anything is mapped.
 * A 2 MiB entry covering @index is downgraded first.  Every successful
 * grab must be paired with vmcoh_entry_unlock().
 *
 * If the block of @index is being loaded, nothing is locked: *@entryp is
 * the load, with a reference for the caller to pass to vmcoh_req_wait()
 * or vmcoh_req_put().
 *
 * Return: 0, VMCOH_LOADING, or -ENOMEM if the xarray could not grow.
 */
int vmcoh_entry_grab(struct vmcoh_dev *dev, pgoff_t index, void **entryp)
{
	XA_STATE(xas, &dev->entries.xa, index);
	void *entry;

	entry_lockdep_acquire();
retry:
	xas_lock(&xas);
	for (;;) {
		entry = xas_load(&xas);
		if (entry_is_free(entry)) {
			if (!entry_is_pmd(entry))
				break;
			entry_downgrade(dev, &xas, entry);
			continue;
		}
		if (entry_is_load(entry)) {
			dev->entries.load_ops->get(entry);
			xas_unlock(&xas);
			entry_lockdep_release();
			*entryp = entry;
			return VMCOH_LOADING;
		}
		entry_wait(dev, &xas, entry, true);
	}
	entry = entry_lock_at(&xas, entry);
	xas_unlock(&xas);
	if (xas_nomem(&xas, GFP_KERNEL))
		goto retry;
	if (xas_error(&xas)) {
		entry_lockdep_release();
		return xas_error(&xas);
	}
	*entryp = entry;
	return 0;
}

/**
 * vmcoh_entry_grab_pmd - lock the 2 MiB entry of the region at @first
 * @dev: the device
 * @first: the region's first index, aligned to VMCOH_RANGE_PAGES
 * @entryp: returns the entry's value as it was before we locked it
 *
 * As vmcoh_entry_grab(), for the whole region: sleeps while another task
 * holds the 2 MiB entry, and creates it locked, PMD and EMPTY, if no index
 * of the region has an entry.  Unlock it with vmcoh_entry_unlock() at
 * @first, keeping VMCOH_ENTRY_PMD in the flags.
 *
 * Return: 0; -EBUSY if an index of the region has an entry of its own or
 * a load in flight (the caller falls back to PTEs); -ENOMEM.
 */
int vmcoh_entry_grab_pmd(struct vmcoh_dev *dev, pgoff_t first, void **entryp)
{
	XA_STATE_ORDER(xas, &dev->entries.xa, first, VMCOH_RANGE_ORDER);
	void *entry;
	int err;

	entry_lockdep_acquire();
retry:
	xas_lock(&xas);
	for (;;) {
		entry = xas_find_conflict(&xas);
		if (!entry || (entry_is_pmd(entry) && !entry_is_locked(entry)))
			break;
		if (!entry_is_pmd(entry)) {
			xas_unlock(&xas);
			err = -EBUSY;
			goto fail;
		}
		entry_wait(dev, &xas, entry, true);
	}
	entry = entry_lock_at(&xas, entry ?:
			      xa_mk_value(VMCOH_ENTRY_PMD | VMCOH_ENTRY_EMPTY));
	xas_unlock(&xas);
	if (xas_nomem(&xas, GFP_KERNEL))
		goto retry;
	err = xas_error(&xas);
	if (err)
		goto fail;
	*entryp = entry;
	return 0;
fail:
	entry_lockdep_release();
	return err;
}

/**
 * vmcoh_entry_trylock_absent - lock @index's entry if it has none
 * @entries: the entry xarray
 * @index: page index
 *
 * For readahead (backing.c), which waits for no entry, and takes none that
 * exists: an absent entry tracks no PTE and no load.  A success is paired
 * with vmcoh_entry_unlock(), or handed to vmcoh_entry_start_load().
 *
 * Return: true if the caller now holds a locked EMPTY entry at @index.
 */
bool vmcoh_entry_trylock_absent(struct vmcoh_entries *entries, pgoff_t index)
{
	XA_STATE(xas, &entries->xa, index);
	bool locked;

	do {
		xas_lock(&xas);
		locked = !xas_load(&xas);
		if (locked)
			entry_lock_at(&xas, NULL);
		xas_unlock(&xas);
	} while (locked && xas_nomem(&xas, GFP_KERNEL));
	if (!locked || xas_error(&xas))
		return false;
	entry_lockdep_acquire_try();
	return true;
}

/**
 * vmcoh_entry_unlock - store a new value for a locked entry and unlock it
 * @entries: the entry xarray
 * @index: the index whose lock the caller holds
 * @flags: the entry's new flags (without LOCKED)
 *
 * An EMPTY entry is removed instead: nothing was mapped from it, so it has
 * no PTE to track, and leaving it would only cost memory.
 */
void vmcoh_entry_unlock(struct vmcoh_entries *entries, pgoff_t index,
			unsigned long flags)
{
	XA_STATE(xas, &entries->xa, index);

	xas_lock(&xas);
	entry_unlock_at(entries, &xas, flags);
	xas_unlock(&xas);
	entry_lockdep_release();
}

/**
 * vmcoh_entry_start_load - trade the entry lock of @index for @load
 * @entries: the entry xarray
 * @index: the index whose lock the caller holds, its block missing
 * @load: the load that will bring the block in
 * @first: in, the lowest index the load may cover; out, its first
 * @last: in, the highest index the load may cover; out, its last
 *
 * Everybody waiting for the entry is woken, to find the load and wait for
 * it instead.  The load also takes the indices around @index, within
 * [@first, @last], that have no entry at all - no lock, no load, nothing
 * mapped - as far as they run on both sides without a gap: each becomes
 * loading by the same request, as if a task had found its block missing
 * under its lock, and no task was waiting for it.  The caller holds no
 * entry lock afterwards.  Storing into a slot that has no xarray node yet
 * may fail here, where we cannot sleep to allocate: the run ends there.
 */
void vmcoh_entry_start_load(struct vmcoh_entries *entries, pgoff_t index,
			    struct vmcoh_req *load, pgoff_t *first,
			    pgoff_t *last)
{
	XA_STATE(xas, &entries->xa, index);
	pgoff_t lo = index, hi = index;
	void *old;

	xas_lock(&xas);
	old = xas_store(&xas, load);
	WARN_ON_ONCE(!old || !entry_is_locked(old));
	entry_wake(entries, &xas, old, true);
	while (hi < *last) {
		xas_set(&xas, hi + 1);
		if (xas_load(&xas))
			break;
		xas_store(&xas, load);
		if (xas_error(&xas))
			break;
		hi++;
	}
	while (lo > *first) {
		xas_set(&xas, lo - 1);
		if (xas_load(&xas))
			break;
		xas_store(&xas, load);
		if (xas_error(&xas))
			break;
		lo--;
	}
	xas_unlock(&xas);
	entry_lockdep_release();
	*first = lo;
	*last = hi;
}

/* Store @with at @index if the entry there is @load; true if it was. */
static bool entry_replace_load(struct vmcoh_entries *entries, pgoff_t index,
			       struct vmcoh_req *load, void *with)
{
	XA_STATE(xas, &entries->xa, index);
	bool replaced;

	xas_lock(&xas);
	replaced = xas_load(&xas) == load;
	if (replaced)
		xas_store(&xas, with);
	xas_unlock(&xas);
	return replaced;
}

/**
 * vmcoh_entry_claim_load - lock the entry of @index if it is still @load's
 * @entries: the entry xarray
 * @index: the load's index
 * @load: the load being answered
 *
 * The answer to a load is installed under the entry lock, taken from the
 * load itself: an invalidation that removed the entry meanwhile made the
 * answer stale, and an invalidation that comes later waits for the lock.
 * No task can hold the entry while it points at the load, so there is
 * nothing to wait for.  On success the entry is locked and EMPTY; unlock it
 * with vmcoh_entry_unlock().
 *
 * Return: true if the entry was @load's and is now locked by the caller.
 */
bool vmcoh_entry_claim_load(struct vmcoh_entries *entries, pgoff_t index,
			    struct vmcoh_req *load)
{
	bool claimed = entry_replace_load(entries, index, load,
					  xa_mk_value(VMCOH_ENTRY_LOCKED |
						      VMCOH_ENTRY_EMPTY));

	if (claimed)
		entry_lockdep_acquire_try();
	return claimed;
}

/**
 * vmcoh_entries_claim_loads - vmcoh_entry_claim_load() for a batch
 * @entries: the entry xarray
 * @first: the first index of the batch, all of them @load's run
 * @nr: how many, at most BITS_PER_LONG
 * @load: the load being answered
 *
 * One xa_lock section and one walk for the batch, as in
 * vmcoh_entries_trylock(), whose locks these are: unlock them with
 * vmcoh_entries_unlock().  Nothing can be waited for here, so lockdep is
 * not told either.
 *
 * Return: bit i set if the entry of @first + i was @load's and is now
 * locked and EMPTY.
 */
unsigned long vmcoh_entries_claim_loads(struct vmcoh_entries *entries,
					pgoff_t first, unsigned int nr,
					struct vmcoh_req *load)
{
	XA_STATE(xas, &entries->xa, first);
	unsigned long claimed = 0;
	unsigned int i;
	void *entry;

	xas_lock(&xas);
	for (i = 0; i < nr; i++) {
		entry = i ? xas_next(&xas) : xas_load(&xas);
		if (entry != load)
			continue;
		/* Over a present entry: nothing to allocate, cannot fail. */
		xas_store(&xas, xa_mk_value(VMCOH_ENTRY_LOCKED |
					    VMCOH_ENTRY_EMPTY));
		claimed |= BIT(i);
	}
	xas_unlock(&xas);
	return claimed;
}

/**
 * vmcoh_entry_drop_load - remove the entry of @index if it is @load's
 * @entries: the entry xarray
 * @index: the load's index
 * @load: the load that failed
 *
 * Return: true if it was; false if an invalidation had removed it.
 */
bool vmcoh_entry_drop_load(struct vmcoh_entries *entries, pgoff_t index,
			   struct vmcoh_req *load)
{
	return entry_replace_load(entries, index, load, NULL);
}

/**
 * vmcoh_entries_trylock - lock several entries in one pass, without waiting
 * @dev: the device
 * @first: first index of the batch
 * @want: bit i set to lock @first + i (at most BITS_PER_LONG indices)
 * @flags: returns, for each index locked, the entry's flags before locking
 *
 * Fault-around's batched entry lock: one xa_lock section and one walk from
 * the root for the whole batch, moving along with xas_next().  An index
 * whose entry is locked or loading is skipped, never waited for, so a
 * caller may hold other entry locks meanwhile without risking a deadlock.
 * An absent entry is created as a locked EMPTY entry, as vmcoh_entry_grab()
 * does; if that fails for want of memory (we may not sleep to allocate
 * here) the batch ends there.  Every index returned must be unlocked with
 * vmcoh_entries_unlock().
 *
 * Return: the bits of @want whose entries are now locked by the caller.
 */
unsigned long vmcoh_entries_trylock(struct vmcoh_dev *dev, pgoff_t first,
				    unsigned long want, unsigned long *flags)
{
	XA_STATE(xas, &dev->entries.xa, first);
	unsigned long locked = 0;
	unsigned int i;
	void *entry;

	if (!want)
		return 0;
	xas_lock(&xas);
	for (i = 0; i <= __fls(want); i++) {
		entry = i ? xas_next(&xas) : xas_load(&xas);
		/* A 2 MiB entry is downgraded by ->fault, which may wait. */
		if (!(want & BIT(i)) || !entry_is_free(entry) ||
		    entry_is_pmd(entry))
			continue;
		entry = entry_lock_at(&xas, entry);
		if (xas_error(&xas))
			break;	/* and xas can walk no further */
		flags[i] = xa_to_value(entry);
		locked |= BIT(i);
	}
	xas_unlock(&xas);
	return locked;
}

/**
 * vmcoh_entries_unlock - unlock a batch from vmcoh_entries_trylock()
 * @entries: the entry xarray
 * @first: first index of the batch
 * @locked: the bits vmcoh_entries_trylock() returned
 * @flags: each entry's new flags (without LOCKED), EMPTY to remove it;
 *	   NULL to remove them all
 *
 * Walks along with xas_next() as the trylock did, except after a removal:
 * the store of NULL may have freed the node the walk stood in (see
 * vmcoh_xas_relax()), so the next index is looked up from the root.
 */
void vmcoh_entries_unlock(struct vmcoh_entries *entries, pgoff_t first,
			  unsigned long locked, const unsigned long *flags)
{
	XA_STATE(xas, &entries->xa, first);
	bool lost = true;
	unsigned int i;

	xas_lock(&xas);
	for_each_set_bit(i, &locked, BITS_PER_LONG) {
		if (lost)
			xas_set(&xas, first + i);
		while (xas.xa_index != first + i)
			xas_next(&xas);
		lost = !flags || flags[i] & VMCOH_ENTRY_EMPTY;
		entry_unlock_at(entries, &xas,
				flags ? flags[i] : VMCOH_ENTRY_EMPTY);
	}
	xas_unlock(&xas);
}

/*
 * unsafe=invalidate_waits_load: wait for a load in flight as if it were an
 * entry lock.  A server that invalidates before it answers (ZEO's
 * invalidateTransaction() vs loadblk(), wendelin f49c11a3) now waits for
 * itself, until the load times out or the waiter is killed.  Returns with
 * xa_lock held and @xas reset; false if killed.
 */
static bool entry_wait_load(struct vmcoh_entries *entries,
			    struct xa_state *xas, void *entry)
	__must_hold(xas->xa->xa_lock)
{
	struct vmcoh_req *load = entry;
	int err;

	entries->load_ops->get(load);
	xas_unlock(xas);
	err = entries->load_ops->wait(load);
	entries->load_ops->put(load);
	xas_reset(xas);
	xas_lock(xas);
	return !err;
}

/*
 * Remove the entries of [@first, @last], waiting for locked ones; with
 * @loads_only, wait for locked ones but remove only loads.
 */
static unsigned long entries_remove(struct vmcoh_dev *dev, pgoff_t first,
				    pgoff_t last, bool loads_only)
{
	XA_STATE(xas, &dev->entries.xa, first);
	bool wait_loads = vmcoh_unsafe(VMCOH_UNSAFE_INVALIDATE_WAITS_LOAD);
	unsigned long removed = 0, seen = 0;
	void *entry;

	/* We wait for entry locks: teach lockdep what we hold meanwhile. */
	entry_lockdep_acquire();
	entry_lockdep_release();
	xas_lock(&xas);
	xas_for_each(&xas, entry, last) {
		if (entry_is_locked(entry)) {
			/* Non-exclusive: the next owner gets the wakeup too. */
			entry_wait(dev, &xas, entry, false);
			continue;	/* xas was reset: look at this index again */
		}
		if (entry_is_load(entry)) {
			if (wait_loads) {
				/* Killed: stop waiting, and remove it below. */
				wait_loads = entry_wait_load(&dev->entries,
							     &xas, entry);
				continue;	/* xas was reset */
			}
			/* LOADING_INVALIDATED: its answer will be dropped. */
			xas_store(&xas, NULL);
		} else if (!loads_only) {
			xas_store(&xas, NULL);
			entry_wake(&dev->entries, &xas, entry, true);
			removed++;
		}
		if (++seen % VMCOH_WALK_BATCH == 0 || need_resched())
			vmcoh_xas_relax(&xas);
	}
	xas_unlock(&xas);
	return removed;
}

/**
 * vmcoh_entries_remove - remove the entries of [@first, @last]
 * @dev: the device
 * @first: first index
 * @last: last index (inclusive; ULONG_MAX for "to the end")
 *
 * Waits for every locked entry in the range to be unlocked before removing
 * it, so when this returns, no fault that read the block map before our
 * caller changed it is still installing a PTE: the unmap that must follow
 * will see all of them.  Entries created behind the cursor while we run
 * were created after the block map changed, and are left alone.
 *
 * A load in flight is not waited for (the server may be the caller, or be
 * waiting for it): its entry is removed, and its answer will be dropped.
 *
 * Return: the number of entries removed, loads not counted (they have no
 * PTEs to unmap).
 */
unsigned long vmcoh_entries_remove(struct vmcoh_dev *dev, pgoff_t first,
				   pgoff_t last)
{
	return entries_remove(dev, first, last, false);
}

/**
 * vmcoh_entries_cancel_loads - invalidate the loads in flight in a range
 * @dev: the device
 * @first: first index
 * @last: last index (inclusive; ULONG_MAX for "to the end")
 *
 * Removes the entries of loads, so their answers will be dropped, and
 * waits for locked entries, among them answers being installed right now;
 * leaves every other entry alone.  The first step of the server's
 * INVALIDATE (see backing.c).
 */
void vmcoh_entries_cancel_loads(struct vmcoh_dev *dev, pgoff_t first,
				pgoff_t last)
{
	entries_remove(dev, first, last, true);
}

/**
 * vmcoh_entries_trim - forget what page tables mapped, once none can
 * @dev: the device
 *
 * Called when a VMA of the object goes.  Once the last one has gone, no
 * page table maps a page of the object, so the entries that only record
 * what may be mapped at a hole (ZERO, PMD, EMPTY) may go too: otherwise
 * reading a sparse terabyte once would leave a value entry per index -
 * gigabytes of xarray nodes - until an invalidation covered them.  The
 * entries of blocks stay: they cost a slot per 4 KiB block already held,
 * and the next mapping's faults lock them in place instead of creating
 * them again (a map, read, unmap loop spent a tenth of its time there).
 * i_mmap_rwsem, held throughout, keeps new VMAs out, and without a VMA no
 * fault runs: the only locked entries are writeback's and invalidation's,
 * which are left alone, as are loads.  While any VMA remains the entries
 * stay; there they cost less than the page tables they describe.
 *
 * Return: the number of entries removed.
 */
unsigned long vmcoh_entries_trim(struct vmcoh_dev *dev)
{
	struct address_space *mapping = dev->mapping;
	XA_STATE(xas, &dev->entries.xa, 0);
	unsigned long trimmed = 0;
	void *entry;

	i_mmap_lock_read(mapping);
	if (mapping_mapped(mapping))
		goto out;
	xas_lock(&xas);
	xas_for_each(&xas, entry, ULONG_MAX) {
		if (!xa_is_value(entry) || entry_is_locked(entry) ||
		    !(xa_to_value(entry) & (VMCOH_ENTRY_ZERO | VMCOH_ENTRY_PMD |
					    VMCOH_ENTRY_EMPTY)))
			continue;
		xas_store(&xas, NULL);
		if (++trimmed % XA_CHECK_SCHED)
			continue;
		xas_pause(&xas);
		xas_unlock(&xas);
		cond_resched();
		xas_lock(&xas);
	}
	xas_unlock(&xas);
out:
	i_mmap_unlock_read(mapping);
	return trimmed;
}

void vmcoh_entries_destroy(struct vmcoh_entries *entries)
{
	XA_STATE(xas, &entries->xa, 0);
	void *entry;

	/*
	 * With no file open there is no fault in flight to hold a lock, and
	 * no server: its release failed every load.
	 */
	xas_lock(&xas);
	xas_for_each(&xas, entry, ULONG_MAX)
		WARN_ON_ONCE(entry_is_locked(entry) || entry_is_load(entry));
	xas_unlock(&xas);
	xa_destroy(&entries->xa);
	kvfree(entries->wait_table);
}
