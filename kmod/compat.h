/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Differences between the kernels vmcoh builds against (Debian's 6.1 and
 * 6.12), kept in one place.
 */
#ifndef VMCOH_COMPAT_H
#define VMCOH_COMPAT_H

#include <linux/fs.h>
#include <linux/highmem.h>
#include <linux/mm.h>
#include <linux/uio.h>

#include "../uapi/vmcoh.h"

/*
 * Kbuild probes the kernel headers for each symbol below and defines
 * VMCOH_HAVE_<NAME> when it exists: distributions backport, so versions
 * would lie.
 */

/* vm_flags became read-only behind accessors in 6.3. */
#ifndef VMCOH_HAVE_VM_FLAGS_SET
static inline void vm_flags_set(struct vm_area_struct *vma, vm_flags_t flags)
{
	vma->vm_flags |= flags;
}

static inline void vm_flags_clear(struct vm_area_struct *vma,
				  vm_flags_t flags)
{
	vma->vm_flags &= ~flags;
}
#endif

/*
 * Give up the lock a fault runs under before returning VM_FAULT_RETRY.
 * Per-VMA locks (6.4) brought release_fault_lock(); before them a fault
 * always held mmap_lock.
 */
static inline void vmcoh_release_fault_lock(struct vm_fault *vmf)
{
#ifdef VMCOH_HAVE_RELEASE_FAULT_LOCK
	release_fault_lock(vmf);
#else
	mmap_read_unlock(vmf->vma->vm_mm);
#endif
}

/* Does the fault run under mmap_lock, rather than its VMA's lock? */
static inline bool vmcoh_fault_holds_mmap_lock(struct vm_fault *vmf)
{
#ifdef VMCOH_HAVE_RELEASE_FAULT_LOCK
	return !(vmf->flags & FAULT_FLAG_VMA_LOCK);
#else
	return true;
#endif
}

/*
 * How many page-table entries map a page of @folio.  Later kernels (6.12)
 * keep the count of a large folio in one field, folio_large_mapcount();
 * 6.1 sums each page's in folio_mapcount(), which it does not export.
 */
static inline int vmcoh_folio_mapcount(struct folio *folio)
{
#ifdef VMCOH_HAVE_FOLIO_LARGE_MAPCOUNT
	return folio_mapcount(folio);
#else
	long i, n = folio_nr_pages(folio);
	int mapcount = 0;

	for (i = 0; i < n; i++)
		mapcount += page_mapcount(folio_page(folio, i));
	return mapcount;
#endif
}

/*
 * ->splice_read through ->read_iter: 6.5 made copy_splice_read() of 6.1's
 * generic_file_splice_read(), which reads into an ITER_PIPE.  Either way
 * the read is read(2)'s (io.c), with its entry locks and loads, and the
 * pipe gets a copy: 6.1's copy_page_to_iter() would put the block itself
 * into the pipe, with the page cache's buffer ops, whose ->confirm wants an
 * uptodate page with a mapping (-ENODATA for ours), so a block is copied
 * into an ITER_PIPE as any kernel buffer is.
 */
#ifdef VMCOH_HAVE_COPY_SPLICE_READ
#define vmcoh_splice_read	copy_splice_read
#else
#define vmcoh_splice_read	generic_file_splice_read
#endif

static inline size_t vmcoh_copy_block_to_iter(struct page *block, size_t off,
					      size_t len, struct iov_iter *to)
{
#ifndef VMCOH_HAVE_COPY_SPLICE_READ
	if (iov_iter_is_pipe(to)) {
		void *src = kmap_local_page(block);
		size_t copied = copy_to_iter(src + off, len, to);

		kunmap_local(src);
		return copied;
	}
#endif
	return copy_page_to_iter(block, off, len, to);
}

/*
 * Can a range be mapped by one PMD?  ->huge_fault needs a DAX mapping
 * (FS_DAX), THP, and a CPU with large pages; and a PMD must map exactly one
 * range (VMCOH_RANGE_SIZE), which it does not with arm64's 16K or 64K pages
 * or on ppc64 (where PMD_SIZE is not even a constant).
 */
static inline bool vmcoh_pmd_supported(void)
{
#if IS_ENABLED(CONFIG_FS_DAX) && IS_ENABLED(CONFIG_TRANSPARENT_HUGEPAGE)
	unsigned long pmd_size = PMD_SIZE;

	return pmd_size == VMCOH_RANGE_SIZE && has_transparent_hugepage();
#else
	return false;
#endif
}

#endif /* VMCOH_COMPAT_H */
