// SPDX-License-Identifier: GPL-2.0
/*
 * read(2) and write(2), and through ->read_iter/->write_iter also pread,
 * pwrite, readv, writev and io_uring.
 *
 * Data is copied straight to and from the blocks, as DAX does: no entry
 * locks, because they would serialize I/O with every fault on the range
 * and would be held across user copies that may fault on a mapping of this
 * very device (write(2) from a buffer that maps /dev/vmcoh) - a deadlock.
 * Instead write(2) takes io_rwsem exclusive, which POSIX-serializes writers
 * and keeps blocks from being freed under either path, and reports the
 * holes it filled to invalidation once the copy is done.  Faults never
 * take io_rwsem, so a user copy that faults here cannot deadlock.
 *
 * The object behaves like a block device at EOF: reads there return 0,
 * writes there fail with -ENOSPC, and a write crossing it is short.
 *
 * Lock order: see vmcoh.h.  io_rwsem -> mmap_lock (user copies) -> entry
 * lock (our own fault path, if the user buffer maps the device).
 */

#include <linux/highmem.h>
#include <linux/uio.h>

#include "hooks.h"
#include "vmcoh.h"

static int io_lock(struct vmcoh_dev *dev, struct kiocb *iocb, bool write)
{
	if (iocb->ki_flags & IOCB_NOWAIT) {
		if (write ? !down_write_trylock(&dev->io_rwsem) :
			    !down_read_trylock(&dev->io_rwsem))
			return -EAGAIN;
		return 0;
	}
	if (write)
		down_write(&dev->io_rwsem);
	else
		down_read(&dev->io_rwsem);
	return 0;
}

ssize_t vmcoh_read_iter(struct kiocb *iocb, struct iov_iter *to)
{
	struct vmcoh_dev *dev = iocb->ki_filp->private_data;
	loff_t pos = iocb->ki_pos;
	ssize_t done = 0;
	int err = 0;
	loff_t size;

	if (!iov_iter_count(to))
		return 0;
	err = io_lock(dev, iocb, false);
	if (err)
		return err;

	size = vmcoh_size(dev);
	while (iov_iter_count(to) && pos < size) {
		size_t off = offset_in_page(pos);
		size_t len = min_t(size_t, PAGE_SIZE - off, iov_iter_count(to));
		struct page *block;
		size_t copied;

		len = min_t(loff_t, len, size - pos);
		block = vmcoh_block_lookup(&dev->map, pos >> PAGE_SHIFT);
		if (block)
			copied = copy_page_to_iter(block, off, len, to);
		else
			copied = iov_iter_zero(len, to);
		pos += copied;
		done += copied;
		if (copied < len) {
			err = -EFAULT;
			break;
		}
		if (fatal_signal_pending(current)) {
			err = -EINTR;
			break;
		}
		cond_resched();
	}
	up_read(&dev->io_rwsem);
	iocb->ki_pos = pos;
	return done ? done : err;
}

/*
 * Copy one page's worth into the hole at @index: into a fresh block that is
 * published only once it holds the data, so no mapping can see it half
 * written.  Return the bytes copied (0 on a fault), or a negative errno;
 * *@filled says whether a hole was filled, which the caller must
 * invalidate.
 */
static ssize_t write_fill_hole(struct vmcoh_dev *dev, pgoff_t index,
			       size_t off, size_t len, struct iov_iter *from,
			       bool *filled)
{
	struct page *new, *block;
	size_t copied;

	new = vmcoh_block_new(dev);
	if (IS_ERR(new))
		return PTR_ERR(new);
	copied = copy_page_from_iter(new, off, len, from);
	if (!copied) {
		vmcoh_block_free(dev, new);
		return 0;
	}
	block = vmcoh_block_publish(dev, index, new);
	if (IS_ERR(block)) {
		vmcoh_block_free(dev, new);
		return PTR_ERR(block);
	}
	if (block != new) {
		/*
		 * A write fault allocated the block meanwhile, under its
		 * entry lock, and replaced the zero page itself.
		 */
		memcpy_page(block, off, new, off, copied);
		vmcoh_block_free(dev, new);
		return copied;
	}
	*filled = true;
	return copied;
}

ssize_t vmcoh_write_iter(struct kiocb *iocb, struct iov_iter *from)
{
	struct vmcoh_dev *dev = iocb->ki_filp->private_data;
	pgoff_t fill_first = ULONG_MAX, fill_last = 0;
	loff_t pos = iocb->ki_pos;
	ssize_t done = 0;
	ssize_t err = 0;
	loff_t size;

	if (!iov_iter_count(from))
		return 0;
	err = io_lock(dev, iocb, true);
	if (err)
		return err;

	size = vmcoh_size(dev);
	if (pos >= size) {
		err = -ENOSPC;
		goto out;
	}
	iov_iter_truncate(from, size - pos);

	while (iov_iter_count(from)) {
		pgoff_t index = pos >> PAGE_SHIFT;
		size_t off = offset_in_page(pos);
		size_t len = min_t(size_t, PAGE_SIZE - off,
				   iov_iter_count(from));
		struct page *block = vmcoh_block_lookup(&dev->map, index);
		bool filled = false;
		ssize_t copied;

		if (block)
			copied = copy_page_from_iter(block, off, len, from);
		else
			copied = write_fill_hole(dev, index, off, len, from,
						 &filled);
		if (copied < 0) {
			err = copied;
			break;
		}
		if (filled) {
			fill_first = min(fill_first, index);
			fill_last = max(fill_last, index);
		}
		pos += copied;
		done += copied;
		if (copied < len) {
			err = -EFAULT;
			break;
		}
		if (fatal_signal_pending(current)) {
			err = -EINTR;
			break;
		}
		cond_resched();
	}

	/*
	 * Holes may be mapped to the zero page: once write(2) returns, no
	 * load may see it there (linux-mm 2017).  The copy is done, so no
	 * user fault can wait on us while we wait for entries.
	 */
	if (fill_first <= fill_last &&
	    !vmcoh_unsafe(VMCOH_UNSAFE_WRITE_NO_INVALIDATE))
		vmcoh_invalidate(dev, fill_first, fill_last, VMCOH_OP_WRITE,
				 NULL);
out:
	up_write(&dev->io_rwsem);
	iocb->ki_pos = pos;
	return done ? done : err;
}
