// SPDX-License-Identifier: GPL-2.0
/*
 * The fault path: how a page of the object gets into page tables.
 *
 * The order, for every fault, is
 *
 *   size check -> entry lock -> block map -> size re-check -> install PTE
 *   -> entry unlock
 *
 * and each step is there for a race in ../shared/seeds/:
 *
 *   - The block map is read under the entry lock (linux-mm 2017, DAX
 *     write vs fault).  Read before it, a fault could see a hole, lose the
 *     CPU while write(2) allocates the block and invalidates (finding
 *     nothing to invalidate yet), and then map the zero page over data
 *     that write(2) has already returned: stale forever.  Under the lock,
 *     write(2)'s invalidation waits for this fault and unmaps what it
 *     installed.
 *   - The size is checked again under the entry lock (lkml 2006,
 *     invalidate_inode_pages vs do_no_page).  A shrink that completed while
 *     we slept would otherwise leave a page mapped beyond EOF.
 *   - The PTE is installed before the entry is unlocked, so an
 *     invalidation that waited for the entry is sure to find the PTE.
 *
 * Page locks.  A block of a plain object (no server, no window) is mapped
 * under its page lock instead, as the page cache maps a folio
 * (filemap_fault()): look the block up without locks, take a reference,
 * lock its page, and look again - still the index's block, below EOF -
 * before the PTE goes in, and unlock after.  Invalidation frees a block
 * only after it took the block out of the map, unmapped the range, and
 * then waited for the block's page lock and unmapped once more if the
 * block is still mapped (invalidate.c, step 3b; mm/truncate.c locks each
 * folio after its first unmap for the same reason).  So either the second
 * look sees the block gone, or the PTE is in before the invalidation's
 * page lock, and the second unmap removes it.  A block that is in the map
 * needs nothing else: no entry says more about it than the map does.  The
 * entry lock remains what orders faults against a hole being filled (the
 * zero page), and against loads, drops, a window's reclaim and writeback:
 * holes, backed objects and windows take the entry path.  The page lock
 * serves every fault on a block of a plain object: ->map_pages and
 * fault-around (vmcoh_blocks_trylock_window()), ->fault - where a store
 * hands the block to the core locked, so that the core maps it writable in
 * the same trap (fault_store_in_one_trap()) - and ->page_mkwrite.
 *
 * Counted fault-around.  In a window, fault-around maps the blocks it finds
 * in the block map under no lock of ours at all, as filemap_map_pages()
 * maps folios it merely trylocks: the page lock does not do here, since a
 * range's blocks are the pages of one compound page, and its one folio lock
 * would serialize every fault-around of the region.  Instead it counts
 * itself in the current generation (vmcoh_around_begin()) before it reads
 * the block map, and an invalidation that took blocks out of the map starts
 * a new generation, always unmaps, and if any fault-around of the old
 * generation was in flight waits for them all to end and unmaps again
 * before it frees anything (invalidate.c, step 3b).  A fault-around counted
 * in the new generation reads the block map as it changed; one counted in
 * the old either ended before the unmap or is waited for.  So the block it
 * maps is still the index's, or unmapped before it can be freed, and a
 * window's range goes back to the pool only after that.  The entry lock
 * adds nothing for a block in the map: writes into it are seen through any
 * mapping, a store reaches ->page_mkwrite and its entry lock, and every
 * change of the map is an invalidation.  ->fault, holes, loads and 2 MiB
 * faults keep their entry locks.  Cheaper than the entry path (two xarray
 * passes storing an entry per page, which were a fifth of a resident random
 * read's time in profiles; docs/bench.md), and the invalidation's wait is
 * for faults that never sleep.
 *
 * Every page a load maps is mapped read-only: shared writable mappings use
 * write notification (vm_page_prot has no write bit because ->page_mkwrite
 * exists), and private mappings copy on write in the core.  A store then
 * reaches ->page_mkwrite, which re-validates under the entry lock (or the
 * page lock, above) before the core makes the PTE writable, and which
 * replaces the zero page with a block, so the zero page is never writable
 * on any kernel.  A store whose
 * first touch is the store maps its block writable in one trap (the core
 * calls ->page_mkwrite for it before it installs the PTE); the zero page
 * is never handed out that way.
 *
 * Holes map dev->zero_page, a zeroed page owned by the device, rather than
 * the kernel's ZERO_PAGE(0): Linux 6.12 refuses the shared zero page in a
 * shared writable VMA (vm_mixed_zeropage_allowed()), and a special PTE for
 * it would hide it from GUP.  Ours is an ordinary refcounted page that no
 * code path ever writes, mapped through vm_insert_page() like the blocks.
 * So each hole PTE counts in its process's file RSS, as a page of a shared
 * library mapped in many processes does in each (PSS divides it), and takes
 * a reference and a mapcount: past VMCOH_ZERO_PAGE_MAX_REFS (2^30, half
 * way to overflow, with room left for 2^20 pins) a hole gets SIGBUS: that
 * is 4 TiB of holes mapped at once, with 8 GiB of page tables.
 *
 * Fault-around: a read fault that mapped its page also maps the blocks of
 * the other pages of its aligned window of dev->fault_around pages (16 by
 * default), as filemap_map_pages() does for the page cache, so a sequential
 * reader takes one fault per window instead of one per page.  Each of those
 * pages follows the protocol above: its entry is locked (one xa_lock pass
 * for the whole window, vmcoh_entries_trylock()), or in a plain object its
 * block's page, its block looked up and the size checked under that lock,
 * its PTE installed before the unlock; in a window, the window is counted
 * instead (above).  Pages whose locks are taken are
 * skipped rather than waited for, and so are holes and pages that may map
 * the zero page; ->fault maps those.  Each
 * step walks the whole window once (xas_next() and xas_for_each()): lookups
 * from the root for every page were most of fault-around's cost in
 * profiles.  The core asks for it first, through ->map_pages, before
 * ->fault (vmcoh_map_pages(): the faulting page of an allocated block is
 * mapped there too, and ->fault is not called); ->fault maps the rest of
 * the window after its own page when ->map_pages could not help: a hole, a
 * load, or a PMD with no page table yet.
 *
 * Backed objects add two waits, each taken with the entry lock let go: for
 * a load in flight (backing.c), and for a DROP of the index's range
 * (writeback.c), which itself waits for entry locks.  A window adds two
 * more, the same way: for a free range, and for a pin of the page's old
 * block to go (window.c, "Pins") before the page backs the index again.
 * ->page_mkwrite of a backed object marks the block dirty under the entry
 * lock, so writeback, which clears the mark and write-protects under the
 * same lock, sees every store.
 *
 * 2 MiB faults (->huge_fault, with a window: a region's blocks are the
 * pages of one compound page, in order).  The same protocol, for a whole
 * region under its 2 MiB entry lock (entry.c): lock, check that every
 * index of the region has its block and is below EOF, install one PMD,
 * unlock.  Anything else falls back to PTEs, where the core then calls
 * ->fault: a region not fully resident (loading it, or filling holes, is
 * the PTE path's business), an index of it with an entry of its own, a
 * DROP of it in flight, a private mapping (which copies on write a page
 * at a time), and a VMA that does not cover the region's 2 MiB at an
 * aligned address (the core may only split a PMD that lies inside its
 * VMA: DEBUG_VM checks it in __split_huge_pmd_locked()).  A store through
 * a read-only PMD comes back here with FAULT_FLAG_WRITE, and marks every
 * block of a backed object's region dirty before the PMD becomes
 * writable; writeback then downgrades it (entry.c), so that each block is
 * write-protected again one page at a time.  A PMD holds no reference to
 * the range it maps (it is a pfn mapping): nothing needs one, since
 * blocks leave the range only after the invalidation's unmap, and the
 * range leaves its region only with its last block.
 *
 * Lock order: see vmcoh.h.  Here: mmap_lock or the VMA lock (held by the
 * core) -> entry lock -> i_mmap_rwsem (unmap_mapping_pages) -> PTL
 * (vm_insert_page); entry lock -> page lock (page_mkwrite, and a store
 * handed to the core, which takes the PTL with it held); page lock -> PTL
 * on the page-lock paths, which take no entry lock.  Fault-around
 * runs after the faulting entry is unlocked and takes its batch with
 * trylocks, so it never waits while holding an entry lock; counted, it
 * takes nothing but the page table lock, and waits for nothing.
 */

#include <linux/mm.h>
#include <linux/pagemap.h>
#include <linux/pfn_t.h>

#include "compat.h"
#include "hooks.h"
#include "trace.h"
#include "vmcoh.h"

static vm_fault_t fault_sigbus(struct vmcoh_dev *dev)
{
	vmcoh_count(dev, VMCOH_SIGBUS);
	return VM_FAULT_SIGBUS;
}

/*
 * If the zero page may be mapped at @index by any VMA (*@flags, the
 * entry's, has VMCOH_ENTRY_ZERO), remove it everywhere before a block takes
 * its place.  Called with @index's entry lock held, so no fault can map
 * the zero page here again meanwhile.
 */
static void fault_unmap_zero_page(struct vmcoh_dev *dev, pgoff_t index,
				  unsigned long *flags)
{
	if (!(*flags & VMCOH_ENTRY_ZERO))
		return;
	unmap_mapping_pages(dev->mapping, index, 1, false);
	vmcoh_count(dev, VMCOH_ZERO_PAGE_UPGRADES);
	*flags &= ~VMCOH_ENTRY_ZERO;
}

/* Called with @index's entry lock held. */
static struct page *fault_publish_block(struct vmcoh_dev *dev, pgoff_t index)
{
	struct page *new, *block;
	bool ours;

	/* A window's page is zeroed as it is published. */
	if (vmcoh_window_enabled(dev))
		return vmcoh_window_publish(dev, index, NULL, &ours);
	new = vmcoh_block_new(dev);
	if (IS_ERR(new))
		return new;
	/* write(2) does not take entry locks: it may have got here first. */
	block = vmcoh_block_publish(dev, index, new, &ours);
	if (!ours)
		vmcoh_block_free(dev, new);
	return block;
}

/*
 * A store into the hole at @index: publish a block there.  Called with the
 * entry lock held; *@flags are the entry's.  If the zero page may be
 * mapped (VMCOH_ENTRY_ZERO), it goes from every VMA first: once the block
 * is published, write(2), which takes no entry lock, copies into it and
 * returns, and a zero-page PTE left behind would show zeros after that -
 * the linux-mm 2017 seed's symptom.  unsafe=zero_unmap_after_publish
 * unmaps after publishing instead; FAULT_ALLOCATED parks in between.
 */
static struct page *fault_alloc_block(struct vmcoh_dev *dev, pgoff_t index,
				      unsigned long *flags)
{
	bool late = vmcoh_unsafe(VMCOH_UNSAFE_ZERO_UNMAP_AFTER_PUBLISH);
	struct page *block;

	if (!late)
		fault_unmap_zero_page(dev, index, flags);
	block = fault_publish_block(dev, index);
	if (IS_ERR(block))
		return block;
	vmcoh_hold_fault(dev, VMCOH_HOLD_FAULT_ALLOCATED, index);
	fault_unmap_zero_page(dev, index, flags);	/* late: only now */
	return block;
}

static vm_fault_t fault_install_pte(struct vm_fault *vmf, struct page *page)
{
	int err = vm_insert_page(vmf->vma, vmf->address & PAGE_MASK, page);

	/*
	 * -EBUSY: another thread of this mm installed the PTE before us,
	 * under the same entry lock, from the same block map.
	 */
	if (!err || err == -EBUSY)
		return VM_FAULT_NOPAGE;
	return vmf_error(err);
}

/*
 * Whether @dev's blocks are mapped under their page locks ("Page locks"
 * above): a plain object, with no server to load from or write back to,
 * and no window to reclaim.
 */
static bool fault_by_page_lock(struct vmcoh_dev *dev)
{
	return !vmcoh_window_enabled(dev) && !vmcoh_backed(dev);
}

/*
 * Called with @block's page locked: is it still the block of @index, below
 * EOF, of an object whose blocks are mapped under page locks?  If it is, no
 * invalidation can free it before the caller unlocks (step 3b waits for
 * the lock).  The backing state is read after the map: a block a server
 * loaded after ATTACH went into the map after the state changed.
 */
static bool fault_block_is_current(struct vmcoh_dev *dev, pgoff_t index,
				   struct page *block)
{
	if (vmcoh_block_lookup(&dev->map, index) != block)
		return false;
	smp_rmb();	/* the map before the backing state: see above */
	return index < vmcoh_size_pages(dev) && fault_by_page_lock(dev);
}

/*
 * The block of @index, with a reference and its page locked, if it is
 * current there (fault_block_is_current()); else NULL.
 */
static struct page *fault_lock_block(struct vmcoh_dev *dev, pgoff_t index)
{
	struct page *block = vmcoh_block_get(&dev->map, index);

	if (!block)
		return NULL;
	lock_page(block);
	if (fault_block_is_current(dev, index, block))
		return block;
	unlock_page(block);
	put_page(block);
	return NULL;
}

/*
 * A store into a block of a plain object, through a shared mapping, is
 * mapped writable in one trap: the block goes back to the core locked, as
 * filemap_fault() returns a page, and the core calls ->page_mkwrite and
 * installs a writable PTE (do_shared_fault(), finish_fault()).  Mapped by
 * fault_install_pte() instead, the PTE would be read-only (write notify),
 * and the store would trap again to make it writable.
 *
 * The PTE is then installed under the block's page lock ("Page locks"
 * above): a block already in the map is locked with no entry lock at all
 * (fault_lock_block()), a block a store just allocated into a hole under
 * the entry lock (fault_hand_to_core()).  ->page_mkwrite takes the page
 * lock again, checks that the block is still the index's, and the core
 * holds the lock until the PTE is in.
 *
 * Not for the zero page (never writable, never handed out), nor for a
 * window (its blocks are pages of a 2 MiB compound page, which
 * finish_fault() would map whole by a PMD), nor for a backed object, whose
 * stores two traps keep in the path ->page_mkwrite has always marked dirty.
 */
static bool fault_store_in_one_trap(struct vmcoh_dev *dev, struct page *page)
{
	return page != dev->zero_page && fault_by_page_lock(dev);
}

/* Called with @block's entry lock held; see fault_store_in_one_trap(). */
static vm_fault_t fault_hand_to_core(struct vm_fault *vmf, struct page *block)
{
	get_page(block);	/* the PTE's reference, as ->fault's are */
	lock_page(block);
	vmf->page = block;
	return VM_FAULT_LOCKED;
}

/*
 * Map @block, which fault_lock_block() returned for @vmf, under its page
 * lock; a store hands it to the core locked (fault_store_in_one_trap()),
 * with the reference the PTE takes over.  The fault's hold points are
 * where they are on the entry path, the page lock standing for the entry's.
 */
static vm_fault_t fault_map_locked_block(struct vm_fault *vmf,
					 struct vmcoh_dev *dev,
					 struct page *block, bool store)
{
	vm_fault_t ret;

	vmcoh_hold_fault(dev, VMCOH_HOLD_FAULT_LOCKED, vmf->pgoff);
	vmcoh_hold_fault(dev, VMCOH_HOLD_FAULT_LOOKED_UP, vmf->pgoff);
	vmcoh_hold_fault(dev, VMCOH_HOLD_FAULT_BEFORE_PTE, vmf->pgoff);
	if (store) {
		vmf->page = block;
		return VM_FAULT_LOCKED;
	}
	ret = fault_install_pte(vmf, block);
	unlock_page(block);
	put_page(block);
	return ret;
}

/* Read the block map for @index; the FAULT_LOOKED_UP hold point follows. */
static struct page *fault_lookup(struct vmcoh_dev *dev, pgoff_t index)
{
	struct page *page = vmcoh_block_lookup(&dev->map, index);

	vmcoh_hold_fault(dev, VMCOH_HOLD_FAULT_LOOKED_UP, index);
	return page;
}

/*
 * unsafe=lookup_before_lock, the linux-mm 2017 race: the block map is read
 * before the entry lock, so write(2) can fill the hole and invalidate in
 * between, and the zero page this returns gets mapped over its data.  The
 * block comes with a reference, so the broken protocol maps stale data but
 * never a freed page.
 */
static struct page *fault_lookup_unlocked(struct vmcoh_dev *dev,
					  pgoff_t index)
{
	struct page *page = vmcoh_block_get(&dev->map, index);

	vmcoh_hold_fault(dev, VMCOH_HOLD_FAULT_LOOKED_UP, index);
	return page;
}

/*
 * Map @blocks[i] at index @first + i for each bit i of @want, read-only, a
 * run of consecutive indices at a time: vm_insert_pages() takes the page
 * table lock once per 8 pages where vm_insert_page() takes it, and walks the
 * page table, once per page.  The pages mapped now, but for @vmf's own,
 * count as fault-around maps.
 *
 * Return: the bits of @want mapped now or already (-EBUSY).
 */
static unsigned long fault_insert_runs(struct vm_fault *vmf,
				       struct vmcoh_dev *dev, pgoff_t first,
				       struct page **blocks,
				       unsigned long want)
{
	struct vm_area_struct *vma = vmf->vma;
	unsigned long done = 0, inserted = 0;
	unsigned int i, end;

	for_each_set_bitrange(i, end, &want, BITS_PER_LONG) {
		while (i < end) {
			unsigned long left = end - i;
			unsigned long addr = vma->vm_start +
				((first + i - vma->vm_pgoff) << PAGE_SHIFT);
			int err = vm_insert_pages(vma, addr, &blocks[i], &left);
			unsigned int n = end - i - left;

			bitmap_set(&inserted, i, n);
			bitmap_set(&done, i, n);
			i += n;
			if (!err || i >= end)
				break;
			if (err == -EBUSY)	/* mapped here, from this block */
				done |= BIT(i);
			i++;
		}
	}
	if (vmf->pgoff >= first && vmf->pgoff - first < BITS_PER_LONG)
		inserted &= ~BIT(vmf->pgoff - first);
	vmcoh_count_add(dev, VMCOH_FAULT_AROUND_MAPS, hweight_long(inserted));
	return done;
}

/*
 * The bits of the @nr indices from @first that are below EOF, read now:
 * after the block map, as each caller's protocol orders it.
 */
static unsigned long fault_below_eof(struct vmcoh_dev *dev, pgoff_t first,
				     unsigned int nr)
{
	pgoff_t size = vmcoh_size_pages(dev);

	if (first + nr <= size)
		return GENMASK(nr - 1, 0);
	return size > first ? GENMASK(size - first - 1, 0) : 0;
}

/*
 * Fault-around in a plain object: each block of the window under its page
 * lock ("Page locks"), taken by vmcoh_blocks_trylock_window() as
 * filemap_map_pages() takes each folio's; then the size and the backing
 * state, which a block still in the map vouches for (fault_block_is_current()).
 */
static unsigned long fault_map_window_by_page_lock(struct vm_fault *vmf,
						   struct vmcoh_dev *dev,
						   pgoff_t first,
						   unsigned int nr,
						   unsigned long want)
{
	struct page *blocks[VMCOH_FAULT_AROUND_MAX];
	unsigned long locked, map, done;

	locked = vmcoh_blocks_trylock_window(&dev->map, first, nr, want,
					     blocks);
	if (!locked)
		return 0;
	smp_rmb();	/* the map before the backing state */
	map = fault_by_page_lock(dev) ? locked : 0;
	map &= fault_below_eof(dev, first, nr);
	done = fault_insert_runs(vmf, dev, first, blocks, map);
	vmcoh_blocks_unlock_window(blocks, locked);
	return done;
}

/*
 * The bits of the @nr pages from @first whose PTEs in @vmf's page table are
 * not none: a hint, read without the page table lock, which spares the
 * pages mapped already the locks and a vm_insert_pages() call each (it
 * fails them with -EBUSY, one at a time).  A re-fault after
 * MADV_DONTNEED or an invalidation of one page finds the rest of its window
 * mapped.  The page table cannot go while the caller holds mmap_lock or
 * the VMA lock (and RCU, for tables freed by RCU); a PTE that changes under
 * the look costs a -EBUSY, or leaves a page to its own fault.
 */
static unsigned long fault_window_mapped(struct vm_fault *vmf, pgoff_t first,
					 unsigned int nr)
{
	struct vm_area_struct *vma = vmf->vma;
	unsigned long addr = vma->vm_start +
			     ((first - vma->vm_pgoff) << PAGE_SHIFT);
	pmd_t pmd = READ_ONCE(*vmf->pmd);
	unsigned long mapped = 0;
	unsigned int i;
	pte_t *pte;

	if (!pmd_present(pmd) || pmd_leaf(pmd))
		return 0;
	rcu_read_lock();
	pte = pte_offset_kernel(&pmd, addr);
	for (i = 0; i < nr; i++) {
		if (!pte_none(ptep_get(pte + i)))
			mapped |= BIT(i);
	}
	rcu_read_unlock();
	return mapped;
}

/* A block of @index's region was mapped: see "Which range goes" (window.c). */
static void fault_touch(struct vmcoh_dev *dev, pgoff_t index)
{
	if (vmcoh_window_enabled(dev))
		vmcoh_window_touch(dev, index);
}

/*
 * Counted fault-around in a window: the blocks of the window that are in
 * the block map, under no lock of ours but a count that invalidation waits
 * for (vmcoh_around_begin()); then the size.  @may_sleep: called from
 * ->fault, not ->map_pages, so that a test may park it after the lookup
 * (VMCOH_HOLD_FAULT_LOOKED_UP at an index of the window).
 */
static unsigned long fault_map_window_counted(struct vm_fault *vmf,
					      struct vmcoh_dev *dev,
					      pgoff_t first, unsigned int nr,
					      unsigned long want,
					      bool may_sleep)
{
	struct page *blocks[VMCOH_FAULT_AROUND_MAX];
	pgoff_t last = first + nr - 1;
	unsigned long done = 0;
	int slot;

	if (!may_sleep &&
	    vmcoh_hold_armed(VMCOH_HOLD_FAULT_LOOKED_UP, first, last))
		return 0;	/* for ->fault's fault-around to park */
	slot = vmcoh_around_begin(dev);
	if (slot < 0)
		return 0;
	/* Being dropped: leave it to ->fault, which waits for the drop. */
	if (!vmcoh_drop_pending(dev, first, last)) {
		want &= vmcoh_blocks_lookup_window(&dev->map, first, nr,
						   blocks);
		if (may_sleep)
			vmcoh_hold_range(dev, VMCOH_HOLD_FAULT_LOOKED_UP,
					 first, last);
		want &= fault_below_eof(dev, first, nr);
		done = fault_insert_runs(vmf, dev, first, blocks, want);
		if (done)
			fault_touch(dev, first);
	}
	vmcoh_around_end(dev, slot);
	return done;
}

/*
 * Map the blocks of [@first, @last], one fault-around window of @vmf's VMA
 * inside one page table, read-only, but not @skip (ULONG_MAX: none), nor
 * pages mapped already (fault_window_mapped()).  Called with no entry lock
 * held; never sleeps, but for a test's park when @may_sleep (->map_pages
 * runs under RCU).  Each step walks the window once, not once per page: the
 * block map without locks, the entry trylocks, the block map under them,
 * the unlocks.
 *
 * Return: the bits (from @first) of the indices this call mapped from their
 * blocks, or found mapped from them (-EBUSY).
 */
static unsigned long fault_map_window(struct vm_fault *vmf,
				      struct vmcoh_dev *dev, pgoff_t first,
				      pgoff_t last, pgoff_t skip,
				      bool may_sleep)
{
	struct page *blocks[VMCOH_FAULT_AROUND_MAX];
	unsigned long flags[VMCOH_FAULT_AROUND_MAX];
	unsigned long want, locked, present, done, map = 0;
	unsigned int i, nr;
	pgoff_t size, mark;

	if (first > last)
		return 0;
	nr = last - first + 1;
	want = GENMASK(nr - 1, 0) & ~fault_window_mapped(vmf, first, nr);
	if (skip >= first && skip <= last)
		want &= ~BIT(skip - first);
	/* A readahead mark is left to ->fault, which may sleep to read ahead. */
	if (vmcoh_backed(dev)) {
		mark = READ_ONCE(dev->backing.ra_async);
		if (mark >= first && mark <= last)
			want &= ~BIT(mark - first);
	}
	if (fault_by_page_lock(dev))
		return fault_map_window_by_page_lock(vmf, dev, first, nr, want);
	if (vmcoh_around_counted(dev))
		return fault_map_window_counted(vmf, dev, first, nr, want,
						may_sleep);

	/* A lockless look first: most windows need no entry at all. */
	want &= vmcoh_blocks_lookup_window(&dev->map, first, nr, blocks);
	locked = vmcoh_entries_trylock(dev, first, want, flags);
	if (!locked)
		return 0;
	/* Being dropped: leave it to ->fault, which waits for the drop. */
	if (vmcoh_drop_pending(dev, first, last)) {
		vmcoh_entries_unlock(&dev->entries, first, locked, flags);
		return 0;
	}

	/* The protocol's order, for every page: entry lock, block map, size. */
	present = vmcoh_blocks_lookup_window(&dev->map, first, nr, blocks);
	size = vmcoh_size_pages(dev);
	for_each_set_bit(i, &locked, VMCOH_FAULT_AROUND_MAX) {
		/* The zero page may be mapped here: ->fault must unmap it. */
		if (flags[i] & VMCOH_ENTRY_ZERO)
			continue;
		if ((present & BIT(i)) && first + i < size)
			map |= BIT(i);
	}
	done = fault_insert_runs(vmf, dev, first, blocks, map);
	for_each_set_bit(i, &done, VMCOH_FAULT_AROUND_MAX)
		flags[i] = 0;
	if (done)
		fault_touch(dev, first);
	vmcoh_entries_unlock(&dev->entries, first, locked, flags);
	return done;
}

/*
 * @vmf's fault-around window: dev->fault_around pages at an address aligned
 * to their size, as the core's do_fault_around() places its own (so the
 * two agree, and a window never crosses a PMD), within the VMA and the
 * object.
 */
static void fault_around_window(struct vm_fault *vmf, struct vmcoh_dev *dev,
				pgoff_t *first, pgoff_t *last)
{
	struct vm_area_struct *vma = vmf->vma;
	unsigned long bytes = (unsigned long)dev->fault_around << PAGE_SHIFT;
	unsigned long address = vmf->address & PAGE_MASK;
	unsigned long start = ALIGN_DOWN(address, bytes);
	pgoff_t vma_last = vma->vm_pgoff + vma_pages(vma) - 1;
	pgoff_t after = (start + bytes - address) >> PAGE_SHIFT;

	start = max(start, vma->vm_start);
	*first = vmf->pgoff - ((address - start) >> PAGE_SHIFT);
	*last = min3(vmf->pgoff + after - 1, vma_last,
		     vmcoh_size_pages(dev) - 1);
}

/*
 * Map the blocks of the rest of @vmf's fault-around window, read-only,
 * after ->fault mapped the faulting page.  Return fault_map_window()'s bits.
 */
static unsigned long fault_around(struct vm_fault *vmf, struct vmcoh_dev *dev)
{
	pgoff_t first, last;

	fault_around_window(vmf, dev, &first, &last);
	return fault_map_window(vmf, dev, first, last, vmf->pgoff, true);
}

/*
 * ->map_pages: a read fault's first stop, before ->fault, called with RCU
 * held and the faulting page's PTE none.  It maps what fault-around maps -
 * the blocks of the aligned window, each under its entry or page lock, never
 * waiting - and the faulting page with them when it is one of those; the
 * core then goes no further.  Holes, loads, drops and entries that may map
 * the zero page are left to ->fault.  The core's window [@start, @end] is
 * ours with the default fault_around_bytes (64 KiB, 16 pages, aligned the
 * same way); if either was tuned, the overlap is mapped.
 *
 * Two reasons to have it.  A fault on an allocated block costs one trylock
 * pass and no call of ->fault.  And since 6.7 a fault under the per-VMA lock
 * calls ->fault only for a VMA whose vm_ops have ->map_pages
 * (vmf_can_call_fault()): without it, every fault of ours was retried
 * under mmap_lock.  ->fault is safe under the VMA lock (fault_wait()).
 *
 * vm_insert_page() may allocate a page table, and must not here: if the PMD
 * has none yet (->map_pages does not get to install the core's preallocated
 * one, which filemap_map_pages() does with a helper modules cannot call), or
 * maps 2 MiB, ->fault does the work.  The core's [@start, @end] stays in the
 * faulting PMD; the window is clipped to it.
 */
static vm_fault_t vmcoh_map_pages(struct vm_fault *vmf, pgoff_t start,
				  pgoff_t end)
{
	struct vmcoh_dev *dev = vmf->vma->vm_file->private_data;
	pmd_t pmd = READ_ONCE(*vmf->pmd);
	unsigned long mapped = 0;
	vm_fault_t ret = 0;
	pgoff_t first, last;

	if (dev->fault_around <= 1 || !pmd_present(pmd) || pmd_leaf(pmd))
		return 0;
	fault_around_window(vmf, dev, &first, &last);
	first = max(first, start);
	last = min(last, end);
	if (vmf->pgoff < first || vmf->pgoff > last)
		goto out;
	mapped = fault_map_window(vmf, dev, first, last, ULONG_MAX, false);
	if (mapped & BIT(vmf->pgoff - first)) {
		vmcoh_count(dev, VMCOH_MAP_PAGES_FAULTS);
		ret = VM_FAULT_NOPAGE;
	}
out:
	trace_vmcoh_map_pages(vmf, first, last, mapped, ret);
	return ret;
}

/* What a fault waits for, holding no entry lock. */
enum fault_wait_for {
	FAULT_WAIT_LOAD,	/* the load of its block */
	FAULT_WAIT_DROP,	/* the end of a DROP of its index */
	FAULT_WAIT_RANGE,	/* a free range of the window */
	FAULT_WAIT_PIN,		/* a pin of its page's old block to go */
};

/*
 * Wait for @what, at @index, with the caller's entry lock let go of: a drop
 * or a reclaim may be waiting for it.  @load, for FAULT_WAIT_LOAD, is the
 * load, which covers @index, and whose reference this drops.
 *
 * A fault that may be retried gives up mmap_lock (or the VMA lock) while
 * it waits, and is retried from the start - every attempt, as for
 * userfaultfd, not only the first, as filemap_fault() does for I/O.  What
 * we wait for may need the server, and the server may live in the faulting
 * mm: once a task there queues for mmap_lock exclusive (an mmap, a new
 * thread's stack), the server's own page faults queue behind it, behind
 * us, and nobody answers (unsafe=wait_holding_mmap_lock).
 *
 * A first attempt whose wait failed is retried, and may do better.  A
 * retried one fails with SIGBUS, taking mmap_lock again: the caller
 * expects it held with any answer but VM_FAULT_RETRY, and uses nothing of
 * the VMA, which may be gone, once told of an error.  (A retried attempt
 * runs under mmap_lock: only a first one runs under the VMA lock.)  A
 * fault that must not drop its lock (FAULT_FLAG_RETRY_NOWAIT) is told to
 * retry at once.  One that may not be retried (GUP from a caller that
 * cannot take mmap_lock again) waits holding it, and looks the index up
 * again.
 *
 * For a free range, a fault that let go of everything reclaims one itself,
 * as read(2) does (vmcoh_window_reclaim_fault()); one that holds mmap_lock
 * waits for the worker, whose reclaim must not wait for it.
 */
static vm_fault_t fault_wait_at(struct vm_fault *vmf, struct vmcoh_dev *dev,
				enum fault_wait_for what, struct vmcoh_req *load,
				pgoff_t index, bool *again)
{
	struct mm_struct *mm = vmf->vma->vm_mm;
	bool drop = vmf->flags & FAULT_FLAG_ALLOW_RETRY;
	bool retried = (vmf->flags & FAULT_FLAG_TRIED) &&
		       vmcoh_fault_holds_mmap_lock(vmf);
	int err;

	if (vmcoh_unsafe(VMCOH_UNSAFE_WAIT_HOLDING_MMAP_LOCK))
		drop = fault_flag_allow_retry_first(vmf->flags);
	if (drop && (vmf->flags & FAULT_FLAG_RETRY_NOWAIT)) {
		if (load)
			vmcoh_req_put(load);
		return VM_FAULT_RETRY;
	}
	if (drop)
		vmcoh_release_fault_lock(vmf);
	switch (what) {
	case FAULT_WAIT_LOAD:
		err = vmcoh_req_wait(dev, load, index);
		break;
	case FAULT_WAIT_DROP:
		err = vmcoh_drop_wait(dev, index);
		break;
	case FAULT_WAIT_PIN:
		err = vmcoh_window_wait_unpinned(dev, index);
		break;
	default:
		/* Holding nothing, a fault reclaims as read(2) does. */
		err = drop ? vmcoh_window_reclaim_fault(dev, index) :
			     vmcoh_window_wait(dev);
		break;
	}
	/* A fatal signal is the caller's to see, with the lock dropped. */
	if (drop && (!err || !retried || err == -EINTR ||
		     mmap_read_lock_killable(mm)))
		return VM_FAULT_RETRY;
	if (err)
		return fault_sigbus(dev);
	*again = true;
	return 0;
}

/* As fault_wait_at(), for the faulting index; a load must cover it. */
static vm_fault_t fault_wait(struct vm_fault *vmf, struct vmcoh_dev *dev,
			     enum fault_wait_for what, struct vmcoh_req *load,
			     bool *again)
{
	return fault_wait_at(vmf, dev, what, load, vmf->pgoff, again);
}

/*
 * Make sure the region of @index, whose entry lock the caller holds, has a
 * range of the window before its block is loaded.  Never reclaim here, with
 * the entry lock held (fault_wait_at() does, once it let go): the
 * reclaim takes io_rwsem and waits for entry locks, and an invalidation
 * holding io_rwsem may be waiting for ours.  unsafe=reclaim_in_fault does,
 * as fuse DAX once did (the 2020 seed), and deadlocks with it.  Return 0,
 * or what the caller must let go of its entry lock and wait for: a free
 * range, or a pin of the page's old block (-EBUSY).
 */
static int fault_reserve_range(struct vmcoh_dev *dev, pgoff_t index,
			       bool region)
{
	bool scattered;
	int err;

	if (!vmcoh_window_enabled(dev))
		return 0;
	scattered = !region && vmcoh_load_scattered(dev, index);
	err = vmcoh_window_reserve(dev, index, scattered);
	if (!err || err == -EBUSY ||
	    !vmcoh_unsafe(VMCOH_UNSAFE_RECLAIM_IN_FAULT))
		return err;
	vmcoh_window_reclaim_in_fault(dev, index);
	return vmcoh_window_reserve(dev, index, scattered);
}

/*
 * Whether the entry lock of @index, which the caller holds, must be let go
 * of to wait for a DROP.  unsafe=drop_under_entry_lock waits right here,
 * holding it, as OCFS2 tasks waited for the cluster lock holding a page
 * lock: the drop waits for the entry, and neither ever finishes.
 */
static bool fault_drop_pending(struct vmcoh_dev *dev, pgoff_t index)
{
	if (!vmcoh_drop_pending(dev, index, index))
		return false;
	if (!vmcoh_unsafe(VMCOH_UNSAFE_DROP_UNDER_ENTRY_LOCK))
		return true;
	vmcoh_drop_wait(dev, index);	/* killable: how the test recovers */
	return false;
}

/* What a fault waits for when the window refused it (-EBUSY, else). */
static enum fault_wait_for fault_window_wait_for(int err)
{
	return err == -EBUSY ? FAULT_WAIT_PIN : FAULT_WAIT_RANGE;
}

/*
 * ->fault's work; *@found is what it found at the index the last time it
 * looked, *@around the bits of the pages fault-around mapped (counted
 * only by the trace event, off the path when it is disabled).
 */
static vm_fault_t fault_pte(struct vm_fault *vmf,
			    enum vmcoh_fault_found *found,
			    unsigned long *around)
{
	struct vm_area_struct *vma = vmf->vma;
	struct vmcoh_dev *dev = vma->vm_file->private_data;
	bool store = (vmf->flags & FAULT_FLAG_WRITE) &&
		     (vma->vm_flags & VM_SHARED);
	bool unlocked_lookup = vmcoh_unsafe(VMCOH_UNSAFE_LOOKUP_BEFORE_LOCK);
	struct page *page = NULL, *stale = NULL;
	struct vmcoh_req *load;
	pgoff_t index = vmf->pgoff;
	bool again = false;
	unsigned long flags;
	vm_fault_t ret;
	void *entry;
	int err;

	vmcoh_count(dev, VMCOH_FAULTS);
	if (!vmcoh_fault_holds_mmap_lock(vmf))
		vmcoh_count(dev, VMCOH_VMA_LOCK_FAULTS);
retry:
	*found = VMCOH_FOUND_EOF;
	if (index >= vmcoh_size_pages(dev))
		return fault_sigbus(dev);
	vmcoh_hold_fault(dev, VMCOH_HOLD_FAULT_SIZE_CHECKED, index);
	if (vmcoh_backed(dev))
		vmcoh_readahead(dev, index);

	/* A block of a plain object: see "Page locks". */
	if (likely(!unlocked_lookup) && fault_by_page_lock(dev)) {
		page = fault_lock_block(dev, index);
		if (page) {
			*found = VMCOH_FOUND_BLOCK;
			ret = fault_map_locked_block(vmf, dev, page, store);
			goto around;
		}
	}

	if (unlikely(unlocked_lookup)) {
		stale = fault_lookup_unlocked(dev, index);
		page = stale;
	}

	err = vmcoh_entry_grab(dev, index, &entry);
	if (err == VMCOH_LOADING) {
		*found = VMCOH_FOUND_LOADING;
		ret = fault_wait(vmf, dev, FAULT_WAIT_LOAD, entry, &again);
		goto out;
	}
	if (err) {
		ret = vmf_error(err);
		goto out;
	}
	flags = xa_to_value(entry);
	vmcoh_hold_fault(dev, VMCOH_HOLD_FAULT_LOCKED, index);

	if (fault_drop_pending(dev, index)) {
		*found = VMCOH_FOUND_DROP;
		vmcoh_entry_unlock(&dev->entries, index, flags);
		ret = fault_wait(vmf, dev, FAULT_WAIT_DROP, NULL, &again);
		goto out;
	}

	if (likely(!unlocked_lookup))
		page = fault_lookup(dev, index);
	*found = page ? VMCOH_FOUND_BLOCK : VMCOH_FOUND_HOLE;

	/* unsafe=no_size_recheck is the lkml 2006 nopage-vs-truncate race. */
	if (index >= vmcoh_size_pages(dev) &&
	    !vmcoh_unsafe(VMCOH_UNSAFE_NO_SIZE_RECHECK)) {
		*found = VMCOH_FOUND_EOF;
		ret = fault_sigbus(dev);
		goto unlock;
	}

	/* Not resident in a backed object: our lock becomes the load. */
	if (!page && vmcoh_backed(dev)) {
		err = fault_reserve_range(dev, index, false);
		if (err) {
			*found = VMCOH_FOUND_WINDOW;
			vmcoh_entry_unlock(&dev->entries, index, flags);
			ret = fault_wait(vmf, dev, fault_window_wait_for(err),
					 NULL, &again);
			goto out;
		}
		*found = VMCOH_FOUND_LOAD;
		load = vmcoh_load_start(dev, index, flags);
		if (IS_ERR(load)) {
			ret = VM_FAULT_OOM;
			goto unlock;
		}
		ret = fault_wait(vmf, dev, FAULT_WAIT_LOAD, load, &again);
		goto out;
	}

	/* A private store copies whatever we map: it never allocates. */
	if (!page && store) {
		page = fault_alloc_block(dev, index, &flags);
		if (IS_ERR(page) && vmcoh_window_refused(dev, PTR_ERR(page))) {
			*found = VMCOH_FOUND_WINDOW;
			vmcoh_entry_unlock(&dev->entries, index, flags);
			ret = fault_wait(vmf, dev,
					 fault_window_wait_for(PTR_ERR(page)),
					 NULL, &again);
			goto out;
		}
		if (IS_ERR(page)) {
			ret = PTR_ERR(page) == -ENOMEM ? VM_FAULT_OOM :
							 fault_sigbus(dev);
			goto unlock;
		}
	}

	if (!page && page_ref_count(dev->zero_page) >= vmcoh_zero_page_max()) {
		ret = fault_sigbus(dev);	/* see VMCOH_ZERO_PAGE_MAX_REFS */
		goto unlock;
	}
	if (!page)
		page = dev->zero_page;
	else
		fault_unmap_zero_page(dev, index, &flags);

	vmcoh_hold_fault(dev, VMCOH_HOLD_FAULT_BEFORE_PTE, index);
	if (store && fault_store_in_one_trap(dev, page)) {
		ret = fault_hand_to_core(vmf, page);
		flags = 0;
		goto unlock;
	}
	ret = fault_install_pte(vmf, page);
	if (!(ret & VM_FAULT_ERROR)) {
		if (page == dev->zero_page) {
			flags = VMCOH_ENTRY_ZERO;
			vmcoh_count(dev, VMCOH_ZERO_PAGE_MAPS);
		} else {
			flags = 0;
			fault_touch(dev, index);
		}
	}
unlock:
	vmcoh_entry_unlock(&dev->entries, index, flags);
around:
	if (dev->fault_around > 1 && !(vmf->flags & FAULT_FLAG_WRITE) &&
	    !(ret & VM_FAULT_ERROR))
		*around = fault_around(vmf, dev);
out:
	if (unlikely(stale)) {
		put_page(stale);
		stale = NULL;
	}
	if (again) {
		again = false;
		page = NULL;
		goto retry;
	}
	return ret;
}

static vm_fault_t vmcoh_fault(struct vm_fault *vmf)
{
	enum vmcoh_fault_found found = VMCOH_FOUND_EOF;
	unsigned long around = 0;
	vm_fault_t ret;

	trace_vmcoh_fault(vmf, false);
	ret = fault_pte(vmf, &found, &around);
	trace_vmcoh_fault_done(vmf, false, found, ret, around);
	return ret;
}

static vm_fault_t fault_mkwrite(struct vm_fault *vmf)
{
	struct vmcoh_dev *dev = vmf->vma->vm_file->private_data;
	struct page *page = vmf->page;
	pgoff_t index = vmf->pgoff;
	struct page *block;
	unsigned long flags;
	vm_fault_t ret;
	void *entry;
	int err;

	vmcoh_count(dev, VMCOH_MKWRITE_FAULTS);
	/* Backed objects are read-only unless the server takes stores. */
	if (index >= vmcoh_size_pages(dev) ||
	    (vmcoh_backed(dev) && !vmcoh_writable(dev)))
		return fault_sigbus(dev);

	/*
	 * A block of a plain object: its page lock is all the core needs
	 * ("Page locks").  Anything else, including a block no longer
	 * current, is sorted out under the entry lock.
	 */
	if (page != dev->zero_page && fault_by_page_lock(dev)) {
		lock_page(page);
		if (fault_block_is_current(dev, index, page)) {
			vmcoh_hold_fault(dev, VMCOH_HOLD_MKWRITE_LOCKED, index);
			return VM_FAULT_LOCKED;
		}
		unlock_page(page);
	}

	err = vmcoh_entry_grab(dev, index, &entry);
	if (err == VMCOH_LOADING) {
		/* Our page was invalidated: the store faults afresh. */
		vmcoh_req_put(entry);
		return VM_FAULT_NOPAGE;
	}
	if (err)
		return vmf_error(err);
	flags = xa_to_value(entry);

	if (fault_drop_pending(dev, index)) {
		vmcoh_entry_unlock(&dev->entries, index, flags);
		/*
		 * ->page_mkwrite may not drop mmap_lock, and the drop waits
		 * for the server (see fault_wait()).  Unmap the page so that
		 * the store faults afresh in ->fault, which waits without it.
		 */
		unmap_mapping_pages(dev->mapping, index, 1, false);
		vmcoh_count(dev, VMCOH_RANGED_UNMAPS);
		return VM_FAULT_NOPAGE;
	}

	block = vmcoh_block_lookup(&dev->map, index);

	/* Again under the lock: DETACH waits for it, then looks for dirt. */
	if (index >= vmcoh_size_pages(dev) ||
	    (vmcoh_backed(dev) && !vmcoh_writable(dev))) {
		ret = fault_sigbus(dev);
		goto unlock;
	}

	/* Our own PTE maps the zero page, whatever the entry says. */
	if (page == dev->zero_page)
		flags |= VMCOH_ENTRY_ZERO;
	if (page == dev->zero_page && vmcoh_backed(dev)) {
		/*
		 * A hole's zero page, mapped before a server attached (ATTACH
		 * unmaps them all, but we may have found it first): the store
		 * faults afresh in ->fault, which loads the server's block.
		 */
		fault_unmap_zero_page(dev, index, &flags);
		ret = VM_FAULT_NOPAGE;
	} else if (page == dev->zero_page) {
		if (!block) {
			block = fault_alloc_block(dev, index, &flags);
			if (IS_ERR(block) &&
			    vmcoh_window_refused(dev, PTR_ERR(block))) {
				/* ->fault waits, without mmap_lock. */
				fault_unmap_zero_page(dev, index, &flags);
				ret = VM_FAULT_NOPAGE;
				goto unlock;
			}
			if (IS_ERR(block)) {
				ret = PTR_ERR(block) == -ENOMEM ?
					VM_FAULT_OOM : fault_sigbus(dev);
				goto unlock;
			}
		}
		/*
		 * Our own PTE goes too.  Map the block read-only in its place:
		 * the retried store write-faults once more and comes back
		 * here with the block, which the core then makes writable.
		 */
		fault_unmap_zero_page(dev, index, &flags);
		flags = 0;
		ret = fault_install_pte(vmf, block);
	} else if (page != block) {
		/*
		 * An invalidation in flight took @page out of the block map
		 * and unmaps it once we unlock: the retried store faults
		 * afresh.
		 */
		ret = VM_FAULT_NOPAGE;
	} else if (vmcoh_backed(dev) &&
		   !vmcoh_block_mark_dirty(dev, index, block)) {
		/* An invalidation took it just now: as above. */
		ret = VM_FAULT_NOPAGE;
	} else {
		/* The core needs the page locked to make the PTE writable. */
		lock_page(page);
		flags &= ~VMCOH_ENTRY_EMPTY;
		ret = VM_FAULT_LOCKED;
	}
unlock:
	vmcoh_entry_unlock(&dev->entries, index, flags);
	if (ret == VM_FAULT_LOCKED)
		vmcoh_hold_fault(dev, VMCOH_HOLD_MKWRITE_LOCKED, index);
	return ret;
}

static vm_fault_t vmcoh_page_mkwrite(struct vm_fault *vmf)
{
	struct vmcoh_dev *dev = vmf->vma->vm_file->private_data;
	bool zero_page = vmf->page == dev->zero_page;
	vm_fault_t ret = fault_mkwrite(vmf);

	trace_vmcoh_page_mkwrite(vmf, zero_page, ret);
	return ret;
}

static vm_fault_t fault_pmd_fallback(struct vmcoh_dev *dev)
{
	vmcoh_count(dev, VMCOH_PMD_FALLBACKS);
	return VM_FAULT_FALLBACK;
}

/*
 * May @vmf's region be mapped by one PMD: its 2 MiB of addresses inside a
 * shared VMA, at the region's aligned start, below EOF?
 */
static bool fault_pmd_fits(struct vm_fault *vmf, struct vmcoh_dev *dev,
			   pgoff_t first)
{
	struct vm_area_struct *vma = vmf->vma;
	unsigned long addr = vmf->address & PMD_MASK;

	return dev->pmd && (vma->vm_flags & VM_SHARED) &&
	       addr >= vma->vm_start && addr + PMD_SIZE <= vma->vm_end &&
	       linear_page_index(vma, addr) == first &&
	       first + VMCOH_RANGE_PAGES <= vmcoh_size_pages(dev);
}

/*
 * A store through a PMD of a backed object: every block of the region may
 * be written.  Called with the region's 2 MiB entry locked.  False if an
 * invalidation took a block meanwhile, or the object is read-only now.
 */
static bool fault_pmd_mark_dirty(struct vmcoh_dev *dev, pgoff_t first,
				 struct page *head)
{
	unsigned int i;

	if (!vmcoh_writable(dev))
		return false;
	for (i = 0; i < VMCOH_RANGE_PAGES; i++) {
		if (!vmcoh_block_mark_dirty(dev, first + i, nth_page(head, i)))
			return false;
	}
	return true;
}

/*
 * A 2 MiB fault on a region of a served object that has no block resident:
 * load the region whole - a server that takes runs is sent the region, as
 * fuse DAX maps 2 MiB per FUSE_SETUPMAPPING - or wait for the load of it
 * in flight (read ahead), and have the fault retried, to map the region by
 * one PMD once it is in, rather than by PTEs after a run of 16 blocks.
 * The region's first entry stands for the region when it has no block; a
 * region with some, whose last block is still loading, is being published
 * by a load, which the fault waits for too.  Any other block resident, or
 * a drop, and the fault falls back to ->fault, which waits for what needs
 * waiting for; with no range free, it lets go and reclaims one, or waits
 * for one, as ->fault does.  Return VM_FAULT_FALLBACK, what fault_wait_at()
 * returned (*@again set to look again, holding the lock), or an error.
 */
static vm_fault_t fault_pmd_load(struct vm_fault *vmf, struct vmcoh_dev *dev,
				 pgoff_t first, bool *again)
{
	pgoff_t last = first + VMCOH_RANGE_PAGES - 1;
	struct vmcoh_req *load;
	unsigned long flags;
	pgoff_t index;
	void *entry;
	int err;

	if (!vmcoh_served(dev) || !READ_ONCE(dev->backing.regions))
		return VM_FAULT_FALLBACK;
	/*
	 * A load publishes its run in order: in a region that has some of
	 * its blocks, the last is the one still loading, if any is.
	 */
	index = vmcoh_window_region_empty(dev, first) ? first : last;
	err = vmcoh_entry_grab(dev, index, &entry);
	if (err == VMCOH_LOADING) {
		load = entry;
		goto wait;
	}
	if (err)
		return vmf_error(err);
	flags = xa_to_value(entry);
	if (index != first || vmcoh_drop_pending(dev, first, last) ||
	    vmcoh_block_lookup(&dev->map, first)) {
		vmcoh_entry_unlock(&dev->entries, index, flags);
		/*
		 * A load in flight published some of the region between our
		 * looks (its first batch, whose entries we waited for), or
		 * all of it: look again, to wait for the rest at the last
		 * block, or to map it whole.
		 */
		if ((index == first && !vmcoh_window_region_empty(dev, first)) ||
		    vmcoh_window_resident(dev, first)) {
			*again = true;
			return 0;
		}
		return VM_FAULT_FALLBACK;
	}
	err = fault_reserve_range(dev, first, true);
	if (err) {
		vmcoh_entry_unlock(&dev->entries, first, flags);
		return fault_wait_at(vmf, dev, fault_window_wait_for(err),
				     NULL, first, again);
	}
	load = vmcoh_load_start_region(dev, first, flags);
	if (IS_ERR(load)) {
		vmcoh_entry_unlock(&dev->entries, first, flags);
		return VM_FAULT_OOM;
	}
wait:
	/* One request for the region: its failure is the faulting block's. */
	return fault_wait_at(vmf, dev, FAULT_WAIT_LOAD, load, index, again);
}

/*
 * ->huge_fault for a PMD: map the region of @vmf by one, or fall back;
 * *@found says which (or a load), for the trace events.
 */
static vm_fault_t __fault_pmd(struct vm_fault *vmf,
			      enum vmcoh_fault_found *found)
{
	struct vmcoh_dev *dev = vmf->vma->vm_file->private_data;
	bool write = vmf->flags & FAULT_FLAG_WRITE;
	pgoff_t first = vmf->pgoff & ~(pgoff_t)(VMCOH_RANGE_PAGES - 1);
	struct page *head;
	unsigned long flags;
	vm_fault_t ret;
	void *entry;
	bool again;
	pmd_t pmd;
	int err;

	/* A region marked for readahead sends the next, mapped either way. */
	if (vmcoh_backed(dev))
		vmcoh_readahead(dev, first);
retry:
	if (!fault_pmd_fits(vmf, dev, first))
		return fault_pmd_fallback(dev);
	/* A lockless look first, not to take the region's lock for nothing. */
	if (!vmcoh_window_resident(dev, first)) {
		again = false;
		*found = VMCOH_FOUND_LOAD;
		ret = fault_pmd_load(vmf, dev, first, &again);
		if (again)
			goto retry;
		return ret == VM_FAULT_FALLBACK ? fault_pmd_fallback(dev) : ret;
	}

	err = vmcoh_entry_grab_pmd(dev, first, &entry);
	if (err == -EBUSY)
		return fault_pmd_fallback(dev);
	if (err)
		return vmf_error(err);
	flags = xa_to_value(entry);
	vmcoh_hold_fault(dev, VMCOH_HOLD_FAULT_LOCKED, first);

	/*
	 * The protocol's order: block map, then size, under the lock.  A
	 * DROP of the region is waited for by ->fault, after the fallback.
	 */
	ret = VM_FAULT_FALLBACK;
	if (vmcoh_drop_pending(dev, first, first + VMCOH_RANGE_PAGES - 1))
		goto unlock;
	head = vmcoh_window_resident(dev, first);
	vmcoh_hold_fault(dev, VMCOH_HOLD_FAULT_LOOKED_UP, first);
	if (!head || !fault_pmd_fits(vmf, dev, first))
		goto unlock;
	/*
	 * A page table left behind by PTEs of the region in this mm, whose
	 * entries an invalidation has removed since: fall back and let
	 * ->fault use it (fs/dax.c does the same).  None can be installed
	 * now, as that takes an entry lock of the region.
	 */
	pmd = READ_ONCE(*vmf->pmd);
	if (!pmd_none(pmd) && !pmd_trans_huge(pmd) && !pmd_devmap(pmd))
		goto unlock;
	if (write && vmcoh_backed(dev) &&
	    !fault_pmd_mark_dirty(dev, first, head))
		goto unlock;

	vmcoh_hold_fault(dev, VMCOH_HOLD_FAULT_BEFORE_PTE, first);
	ret = vmf_insert_pfn_pmd(vmf, page_to_pfn_t(head), write);
	if (ret == VM_FAULT_NOPAGE) {
		*found = VMCOH_FOUND_BLOCK;
		flags = VMCOH_ENTRY_PMD;
		vmcoh_count(dev, VMCOH_PMD_MAPS);
		fault_touch(dev, first);
	}
unlock:
	vmcoh_entry_unlock(&dev->entries, first, flags);
	return ret == VM_FAULT_FALLBACK ? fault_pmd_fallback(dev) : ret;
}

static vm_fault_t fault_pmd(struct vm_fault *vmf)
{
	enum vmcoh_fault_found found = VMCOH_FOUND_FALLBACK;
	vm_fault_t ret;

	trace_vmcoh_fault(vmf, true);
	ret = __fault_pmd(vmf, &found);
	if (ret & VM_FAULT_FALLBACK)
		found = VMCOH_FOUND_FALLBACK;
	trace_vmcoh_fault_done(vmf, true, found, ret, 0);
	return ret;
}

#ifdef VMCOH_HAVE_PAGE_ENTRY_SIZE
static vm_fault_t vmcoh_huge_fault(struct vm_fault *vmf,
				   enum page_entry_size pe_size)
{
	if (pe_size != PE_SIZE_PMD)
		return VM_FAULT_FALLBACK;
	return fault_pmd(vmf);
}
#else
static vm_fault_t vmcoh_huge_fault(struct vm_fault *vmf, unsigned int order)
{
	if (order != PMD_ORDER)
		return VM_FAULT_FALLBACK;
	return fault_pmd(vmf);
}
#endif

/* A VMA goes: if it was the last, the entries go with it (entry.c). */
static void vmcoh_vma_close(struct vm_area_struct *vma)
{
	struct vmcoh_dev *dev = vma->vm_file->private_data;

	vmcoh_count_add(dev, VMCOH_ENTRIES_TRIMMED, vmcoh_entries_trim(dev));
}

const struct vm_operations_struct vmcoh_vm_ops = {
	.close		= vmcoh_vma_close,
	.fault		= vmcoh_fault,
	.map_pages	= vmcoh_map_pages,
	.huge_fault	= vmcoh_huge_fault,
	.page_mkwrite	= vmcoh_page_mkwrite,
};
