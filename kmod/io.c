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
 * holes it filled to invalidation once the copy is done.  A fault takes
 * io_rwsem only to reclaim a range, holding nothing (window.c), and a user
 * copy under io_rwsem does not fault (below), so it cannot deadlock on it.
 *
 * But a fault on a backed object may wait for the server, and the server
 * may need io_rwsem (INVALIDATE), so nothing waits for the server while
 * io_rwsem is held: user copies run with page faults disabled, and a copy
 * that comes up short drops io_rwsem, faults the user buffer in, and goes
 * on (the pattern of generic_perform_write()); a block that is not
 * resident is loaded with io_rwsem dropped, and looked up again; so is an
 * index being dropped (writeback.c) waited for.  write(2) into a backed
 * object loads the block, copies, and marks it dirty, all under io_rwsem
 * exclusive, which writeback's copy of the block excludes; without a
 * writable server it fails with -EROFS.  When the window (window.c) has no
 * free range for a block to load, read(2) and write(2) drop io_rwsem and
 * reclaim one inline, of another region, before they look again.
 *
 * The object behaves like a block device at EOF: reads there return 0,
 * writes there fail with -ENOSPC, and a write crossing it is short.
 *
 * Lock order: see vmcoh.h.  io_rwsem -> mmap_lock (user copies) -> entry
 * lock (our own fault path, if the user buffer maps the device).
 */

#include <linux/highmem.h>
#include <linux/uio.h>

#include "compat.h"
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

static void io_unlock(struct vmcoh_dev *dev, bool write)
{
	if (write)
		up_write(&dev->io_rwsem);
	else
		up_read(&dev->io_rwsem);
}

/*
 * Drop io_rwsem to fault in @len bytes of the user buffer after a short
 * copy, which must not be waited for under it.  Return 0 to go on, with
 * io_rwsem taken again, or a negative errno, with io_rwsem dropped.
 */
static int io_unlocked_fault_in(struct vmcoh_dev *dev, struct kiocb *iocb,
				bool write, struct iov_iter *iter, size_t len)
{
	int err = 0;

	io_unlock(dev, write);
	if (iocb->ki_flags & IOCB_NOWAIT) {
		err = -EAGAIN;
	} else {
		/* Nothing faulted in: the buffer is bad. */
		len = min_t(size_t, len, iov_iter_count(iter));
		if ((write ? fault_in_iov_iter_readable(iter, len) :
			     fault_in_iov_iter_writeable(iter, len)) == len)
			err = -EFAULT;
	}
	return err ? err : io_lock(dev, iocb, write);
}

/*
 * The block of @index, with io_rwsem held (exclusive if @write).  In a
 * backed object, a block that is not resident is loaded first, and an
 * index being dropped waits for the drop: both with io_rwsem dropped, which
 * the server and the drop may need.  Return 0 with *@blockp set (NULL: a
 * hole); 1 if io_rwsem was dropped and taken again, and the caller must
 * look again; or a negative errno, with io_rwsem dropped (-EAGAIN for
 * IOCB_NOWAIT, which must not wait).
 */
static int io_block(struct vmcoh_dev *dev, struct kiocb *iocb, pgoff_t index,
		    bool write, struct page **blockp)
{
	struct vmcoh_req *load;
	int err;

	*blockp = vmcoh_block_lookup(&dev->map, index);
	if (!vmcoh_backed(dev))
		return 0;
	vmcoh_readahead(dev, index);
	if (vmcoh_drop_pending(dev, index, index)) {
		io_unlock(dev, write);
		if (iocb->ki_flags & IOCB_NOWAIT)
			return -EAGAIN;
		err = vmcoh_drop_wait(dev, index);
		return err ? err : io_lock(dev, iocb, write) ?: 1;
	}
	if (*blockp)
		return 0;
	if (iocb->ki_flags & IOCB_NOWAIT) {
		io_unlock(dev, write);
		return -EAGAIN;
	}
	err = vmcoh_load_block(dev, index, &load);
	if (!err)
		return 1;
	io_unlock(dev, write);
	if (err == VMCOH_LOADING) {
		err = vmcoh_req_wait(dev, load, index);
		return err ? err : io_lock(dev, iocb, write) ?: 1;
	}
	/* The window is full: reclaim a range, holding nothing. */
	if (err == -ENOSPC && vmcoh_window_enabled(dev)) {
		err = vmcoh_window_reclaim_inline(dev, index);
		return err ? err : io_lock(dev, iocb, write) ?: 1;
	}
	/* A pin of the page's old block, or memory for a range (window.c). */
	if (vmcoh_window_refused(dev, err)) {
		err = vmcoh_window_wait_refused(dev, index, err);
		return err ? err : io_lock(dev, iocb, write) ?: 1;
	}
	return err;
}

ssize_t vmcoh_read_iter(struct kiocb *iocb, struct iov_iter *to)
{
	struct vmcoh_dev *dev = iocb->ki_filp->private_data;
	loff_t pos = iocb->ki_pos;
	pgoff_t touched = ULONG_MAX;
	ssize_t done = 0;
	int err = 0;

	if (!iov_iter_count(to))
		return 0;
	err = io_lock(dev, iocb, false);
	if (err)
		return err;

	while (iov_iter_count(to) && pos < vmcoh_size(dev)) {
		size_t off = offset_in_page(pos);
		size_t len = min_t(size_t, PAGE_SIZE - off, iov_iter_count(to));
		struct page *block;
		size_t copied;

		len = min_t(loff_t, len, vmcoh_size(dev) - pos);
		err = io_block(dev, iocb, pos >> PAGE_SHIFT, false, &block);
		if (err > 0)
			continue;
		if (err)
			goto unlocked;
		/* Once per region: keeps its range active (window.c). */
		if (block && vmcoh_window_enabled(dev) &&
		    (pos >> PAGE_SHIFT >> VMCOH_RANGE_ORDER) != touched) {
			touched = pos >> PAGE_SHIFT >> VMCOH_RANGE_ORDER;
			vmcoh_window_touch(dev, pos >> PAGE_SHIFT);
		}
		pagefault_disable();
		if (block)
			copied = vmcoh_copy_block_to_iter(block, off, len, to);
		else
			copied = iov_iter_zero(len, to);
		pagefault_enable();
		pos += copied;
		done += copied;
		if (copied < len) {
			err = io_unlocked_fault_in(dev, iocb, false, to,
						   len - copied);
			if (err)
				goto unlocked;
			continue;
		}
		if (fatal_signal_pending(current)) {
			err = -EINTR;
			break;
		}
		cond_resched();
	}
	up_read(&dev->io_rwsem);
unlocked:
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
	bool ours;

	new = vmcoh_block_new(dev);
	if (IS_ERR(new))
		return PTR_ERR(new);
	pagefault_disable();
	copied = copy_page_from_iter(new, off, len, from);
	pagefault_enable();
	if (!copied) {
		vmcoh_block_free(dev, new);
		return 0;
	}
	block = vmcoh_block_publish(dev, index, new, &ours);
	if (IS_ERR(block)) {
		/* Not written: the caller may try again (-EBUSY). */
		iov_iter_revert(from, copied);
		vmcoh_block_free(dev, new);
		return PTR_ERR(block);
	}
	/*
	 * Not ours: a write fault allocated the block meanwhile, under its
	 * entry lock, and replaced the zero page itself.
	 */
	if (!ours)
		memcpy_page(block, off, new, off, copied);
	*filled = ours;
	/* Unless it went in itself (a window copies it into its range). */
	if (block != new)
		vmcoh_block_free(dev, new);
	return copied;
}

/*
 * Holes may be mapped to the zero page: once write(2) returns, or lets
 * go of io_rwsem, no load may see it where a hole was filled (linux-mm
 * 2017).  No user copy is in progress, so no user fault can wait on us
 * while we wait for entries.
 */
static void write_invalidate_filled(struct vmcoh_dev *dev, pgoff_t *first,
				    pgoff_t *last)
{
	if (*first <= *last &&
	    !vmcoh_unsafe(VMCOH_UNSAFE_WRITE_NO_INVALIDATE))
		vmcoh_invalidate(dev, *first, *last, VMCOH_OP_WRITE, NULL);
	*first = ULONG_MAX;
	*last = 0;
}

/* The object, with io_rwsem held: can @pos be written, and how far? */
static int write_check(struct vmcoh_dev *dev, loff_t pos,
		       struct iov_iter *from)
{
	if (vmcoh_backed(dev) && !vmcoh_writable(dev))
		return -EROFS;
	if (pos >= vmcoh_size(dev))
		return -ENOSPC;
	iov_iter_truncate(from, vmcoh_size(dev) - pos);
	return 0;
}

ssize_t vmcoh_write_iter(struct kiocb *iocb, struct iov_iter *from)
{
	struct vmcoh_dev *dev = iocb->ki_filp->private_data;
	pgoff_t fill_first = ULONG_MAX, fill_last = 0;
	loff_t pos = iocb->ki_pos;
	ssize_t done = 0;
	ssize_t err = 0;

	if (!iov_iter_count(from))
		return 0;
	err = io_lock(dev, iocb, true);
	if (err)
		return err;
	err = write_check(dev, pos, from);

	while (!err && iov_iter_count(from)) {
		pgoff_t index = pos >> PAGE_SHIFT;
		size_t off = offset_in_page(pos);
		size_t len = min_t(size_t, PAGE_SIZE - off,
				   iov_iter_count(from));
		bool filled = false;
		struct page *block;
		ssize_t copied;

		err = io_block(dev, iocb, index, true, &block);
		if (err > 0) {
			err = write_check(dev, pos, from);
			continue;
		}
		if (err)
			goto unlocked;
		if (block) {
			pagefault_disable();
			copied = copy_page_from_iter(block, off, len, from);
			pagefault_enable();
			/* A backed object's block is loaded: never a hole. */
			if (copied && vmcoh_backed(dev))
				vmcoh_block_mark_dirty(dev, index, block);
		} else {
			copied = write_fill_hole(dev, index, off, len, from,
						 &filled);
		}
		if (vmcoh_window_refused(dev, copied)) {
			/* As in io_block(): wait, holding nothing. */
			write_invalidate_filled(dev, &fill_first, &fill_last);
			io_unlock(dev, true);
			err = iocb->ki_flags & IOCB_NOWAIT ? -EAGAIN :
			      vmcoh_window_wait_refused(dev, index, copied) ?:
			      io_lock(dev, iocb, true);
			if (err)
				goto unlocked;
			err = write_check(dev, pos, from);
			continue;
		}
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
			write_invalidate_filled(dev, &fill_first, &fill_last);
			err = io_unlocked_fault_in(dev, iocb, true, from,
						   len - copied);
			if (err)
				goto unlocked;
			/* The object may have changed meanwhile. */
			err = write_check(dev, pos, from);
			continue;
		}
		if (fatal_signal_pending(current)) {
			err = -EINTR;
			break;
		}
		cond_resched();
	}
	write_invalidate_filled(dev, &fill_first, &fill_last);
	up_write(&dev->io_rwsem);
unlocked:
	iocb->ki_pos = pos;
	return done ? done : err;
}
