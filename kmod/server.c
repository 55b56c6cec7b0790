// SPDX-License-Identifier: GPL-2.0
/*
 * The server's channel (uapi/vmcoh.h, "Backing store"): ATTACH, RECV,
 * REPLY, INVALIDATE, DETACH, and what happens when the server dies.
 *
 * backing.inflight maps request ids to the loads not yet answered, and its
 * xa_lock is the channel's lock: it also protects the state, the server's
 * file and the queue of loads not yet received.  A load leaves inflight
 * exactly once - answered (REPLY), timed out (vmcoh_server_cancel()), or
 * failed because the server went away - and whoever takes it out finishes
 * it with vmcoh_load_finish(), outside the lock.
 *
 * The server's file is the channel: closing it without DETACH means the
 * server died, which orphans the object (see the uapi header).
 *
 * Lock order: see vmcoh.h.  The channel's lock is a leaf spinlock.  REPLY
 * copies the answer from the server's memory holding nothing, and then
 * takes an entry lock to install it (backing.c).  ATTACH and DETACH take
 * io_rwsem exclusive.
 */

#include <linux/highmem.h>
#include <linux/poll.h>
#include <linux/uaccess.h>

#include "vmcoh.h"

void vmcoh_backing_init(struct vmcoh_backing *backing)
{
	backing->state = VMCOH_BACKING_NONE;
	backing->server = NULL;
	INIT_LIST_HEAD(&backing->queue);
	xa_init_flags(&backing->inflight, XA_FLAGS_ALLOC1);
	backing->next_id = 0;
	init_waitqueue_head(&backing->recv_wait);
}

void vmcoh_backing_destroy(struct vmcoh_backing *backing)
{
	/* The server's release failed every load, and no file is open. */
	WARN_ON_ONCE(!xa_empty(&backing->inflight));
	xa_destroy(&backing->inflight);
}

static bool server_is(struct vmcoh_backing *backing, struct file *file)
{
	return READ_ONCE(backing->server) == file;
}

/**
 * vmcoh_server_submit - queue a LOAD for the server
 * @dev: the device
 * @load: a new load, already in its entry
 *
 * Return: 0, or -EIO if no server is attached.
 */
int vmcoh_server_submit(struct vmcoh_dev *dev, struct vmcoh_load *load)
{
	struct vmcoh_backing *backing = &dev->backing;
	u32 id;
	int err = -EIO;

	xa_lock(&backing->inflight);
	if (backing->state == VMCOH_BACKING_SERVED) {
		/* May drop the lock to allocate: check the state again. */
		err = __xa_alloc_cyclic(&backing->inflight, &id, load,
					xa_limit_32b, &backing->next_id,
					GFP_KERNEL);
		if (err >= 0 && backing->state != VMCOH_BACKING_SERVED) {
			__xa_erase(&backing->inflight, id);
			err = -EIO;
		}
	}
	if (err >= 0) {
		load->id = id;
		list_add_tail(&load->queued, &backing->queue);
	}
	xa_unlock(&backing->inflight);
	if (err < 0)
		return err == -ENOMEM ? err : -EIO;
	vmcoh_count(dev, VMCOH_LOADS);
	wake_up_interruptible(&backing->recv_wait);
	return 0;
}

/* Take @load out of inflight if it is still there; under the lock. */
static bool server_take_locked(struct vmcoh_backing *backing,
			       struct vmcoh_load *load)
{
	if (!load->id || xa_load(&backing->inflight, load->id) != load)
		return false;
	__xa_erase(&backing->inflight, load->id);
	list_del_init(&load->queued);
	return true;
}

/**
 * vmcoh_server_cancel - fail @load unless it has been answered
 * @dev: the device
 * @load: a load, referenced by the caller
 * @err: why: -ETIMEDOUT
 */
void vmcoh_server_cancel(struct vmcoh_dev *dev, struct vmcoh_load *load,
			 int err)
{
	struct vmcoh_backing *backing = &dev->backing;
	bool taken;

	xa_lock(&backing->inflight);
	taken = server_take_locked(backing, load);
	xa_unlock(&backing->inflight);
	if (taken) {
		vmcoh_count(dev, VMCOH_LOAD_TIMEOUTS);
		vmcoh_load_finish(load, NULL, err);
	}
}

/*
 * The server is gone (closed its file, or DETACH): switch to @state and
 * fail every load it has not answered.
 */
static void server_detach(struct vmcoh_dev *dev, unsigned int state)
{
	struct vmcoh_backing *backing = &dev->backing;
	XA_STATE(xas, &backing->inflight, 0);
	struct vmcoh_load *load, *next;
	LIST_HEAD(failed);

	xas_lock(&xas);
	WRITE_ONCE(backing->state, state);
	WRITE_ONCE(backing->server, NULL);
	xas_for_each(&xas, load, U32_MAX) {
		/* XA_FLAGS_ALLOC1 keeps index 0 busy with a zero entry. */
		if (xas_retry(&xas, load))
			continue;
		xas_store(&xas, NULL);
		list_del_init(&load->queued);
		list_add_tail(&load->queued, &failed);
	}
	xas_unlock(&xas);
	wake_up_all(&backing->recv_wait);

	list_for_each_entry_safe(load, next, &failed, queued) {
		list_del_init(&load->queued);
		vmcoh_load_finish(load, NULL, -EIO);
	}
}

/* A file of /dev/vmcoh is closed for the last time. */
void vmcoh_server_release(struct file *file)
{
	struct vmcoh_dev *dev = file->private_data;

	if (server_is(&dev->backing, file))
		server_detach(dev, VMCOH_BACKING_ORPHANED);
}

__poll_t vmcoh_server_poll(struct file *file, struct poll_table_struct *pt)
{
	struct vmcoh_backing *backing =
		&((struct vmcoh_dev *)file->private_data)->backing;
	__poll_t mask;

	/* Other files are regular files to poll(): always ready. */
	if (!server_is(backing, file))
		return EPOLLIN | EPOLLOUT | EPOLLRDNORM | EPOLLWRNORM;
	poll_wait(file, &backing->recv_wait, pt);
	xa_lock(&backing->inflight);
	if (backing->server != file)
		mask = EPOLLERR;
	else
		mask = list_empty(&backing->queue) ? 0 : EPOLLIN | EPOLLRDNORM;
	xa_unlock(&backing->inflight);
	return mask;
}

/* ATTACH and DETACH take a struct vmcoh_attach with nothing in it yet. */
static long attach_arg(void __user *arg)
{
	struct vmcoh_attach req;

	if (copy_from_user(&req, arg, sizeof(req)))
		return -EFAULT;
	if (req.flags ||
	    !vmcoh_reserved_zero(req.reserved, ARRAY_SIZE(req.reserved)))
		return -EINVAL;
	return 0;
}

static long server_attach(struct file *file, void __user *arg)
{
	struct vmcoh_dev *dev = file->private_data;
	struct vmcoh_backing *backing = &dev->backing;
	unsigned int was;
	long ret;

	ret = attach_arg(arg);
	if (ret)
		return ret;

	/* io_rwsem: write(2) cannot add a block while we look. */
	down_write(&dev->io_rwsem);
	xa_lock(&backing->inflight);
	was = backing->state;
	if (was == VMCOH_BACKING_SERVED ||
	    (was == VMCOH_BACKING_NONE &&
	     atomic_long_read(&dev->map.nr_blocks))) {
		ret = -EBUSY;
	} else {
		WRITE_ONCE(backing->state, VMCOH_BACKING_SERVED);
		WRITE_ONCE(backing->server, file);
	}
	xa_unlock(&backing->inflight);
	/* Holes may be mapped to the zero page: the server's data goes there. */
	if (!ret && was == VMCOH_BACKING_NONE)
		vmcoh_backing_drop_all(dev);
	up_write(&dev->io_rwsem);
	if (!ret)
		vmcoh_count(dev, VMCOH_ATTACHES);
	return ret;
}

static long server_detach_ioctl(struct file *file, void __user *arg)
{
	struct vmcoh_dev *dev = file->private_data;
	long ret = attach_arg(arg);

	if (ret)
		return ret;
	if (!server_is(&dev->backing, file))
		return -EPERM;
	/* Orphaned meanwhile: loads fail rather than read as holes. */
	server_detach(dev, VMCOH_BACKING_ORPHANED);
	down_write(&dev->io_rwsem);
	vmcoh_backing_drop_all(dev);
	/* Unless a new server attached before we took io_rwsem. */
	xa_lock(&dev->backing.inflight);
	if (dev->backing.state == VMCOH_BACKING_ORPHANED)
		WRITE_ONCE(dev->backing.state, VMCOH_BACKING_NONE);
	xa_unlock(&dev->backing.inflight);
	up_write(&dev->io_rwsem);
	return 0;
}

/* Wait for a request and take it off the queue, with a reference. */
static struct vmcoh_load *server_next(struct vmcoh_backing *backing,
				      struct file *file, bool nonblock)
{
	struct vmcoh_load *load;
	int err;

	for (;;) {
		xa_lock(&backing->inflight);
		if (backing->server != file) {
			xa_unlock(&backing->inflight);
			return ERR_PTR(-EPERM);
		}
		load = list_first_entry_or_null(&backing->queue,
						struct vmcoh_load, queued);
		if (load) {
			list_del_init(&load->queued);
			vmcoh_load_get(load);
		}
		xa_unlock(&backing->inflight);
		if (load)
			return load;
		if (nonblock)
			return ERR_PTR(-EAGAIN);
		err = wait_event_interruptible(backing->recv_wait,
					       !list_empty(&backing->queue) ||
					       !server_is(backing, file));
		if (err)
			return ERR_PTR(-EINTR);
	}
}

static long server_recv(struct file *file, void __user *arg)
{
	struct vmcoh_dev *dev = file->private_data;
	struct vmcoh_backing *backing = &dev->backing;
	struct vmcoh_request req;
	struct vmcoh_load *load;

	if (copy_from_user(&req, arg, sizeof(req)))
		return -EFAULT;
	if ((req.flags & ~VMCOH_RECV_NONBLOCK) ||
	    !vmcoh_reserved_zero(req.reserved, ARRAY_SIZE(req.reserved)))
		return -EINVAL;

	load = server_next(backing, file, req.flags & VMCOH_RECV_NONBLOCK);
	if (IS_ERR(load))
		return PTR_ERR(load);
	req.id = load->id;
	req.op = VMCOH_REQ_LOAD;
	req.offset = (u64)load->index << PAGE_SHIFT;
	req.length = PAGE_SIZE;
	if (copy_to_user(arg, &req, sizeof(req))) {
		/* Not delivered: back to the head of the queue, if pending. */
		xa_lock(&backing->inflight);
		if (xa_load(&backing->inflight, load->id) == load)
			list_add(&load->queued, &backing->queue);
		xa_unlock(&backing->inflight);
		vmcoh_load_put(load);
		return -EFAULT;
	}
	vmcoh_load_put(load);
	return 0;
}

static long server_reply(struct file *file, void __user *arg)
{
	struct vmcoh_dev *dev = file->private_data;
	struct vmcoh_backing *backing = &dev->backing;
	struct vmcoh_load *load;
	struct vmcoh_reply req;
	struct page *block;
	void *dst;
	int err;

	if (copy_from_user(&req, arg, sizeof(req)))
		return -EFAULT;
	if (req.flags ||
	    !vmcoh_reserved_zero(req.reserved, ARRAY_SIZE(req.reserved)))
		return -EINVAL;
	if (req.error && (req.error < -MAX_ERRNO || req.error > -1 ||
			  req.data || req.length))
		return -EINVAL;
	if (!req.error && req.length != PAGE_SIZE)
		return -EINVAL;
	if (req.id > U32_MAX)
		return -ENOENT;

	xa_lock(&backing->inflight);
	if (backing->server != file) {
		xa_unlock(&backing->inflight);
		return -EPERM;
	}
	load = xa_load(&backing->inflight, req.id);
	/* Only what RECV delivered can be answered. */
	if (!load || !list_empty(&load->queued) ||
	    !server_take_locked(backing, load)) {
		xa_unlock(&backing->inflight);
		return -ENOENT;
	}
	xa_unlock(&backing->inflight);

	/* The load is ours to finish now, whatever happens. */
	if (req.error) {
		vmcoh_load_finish(load, NULL, -EIO);
		return 0;
	}
	block = vmcoh_block_new(dev);
	if (IS_ERR(block)) {
		vmcoh_load_finish(load, NULL, PTR_ERR(block));
		return PTR_ERR(block);
	}
	dst = kmap_local_page(block);
	err = copy_from_user(dst, u64_to_user_ptr(req.data), PAGE_SIZE) ?
	      -EFAULT : 0;
	kunmap_local(dst);
	if (err) {
		vmcoh_block_free(dev, block);
		vmcoh_load_finish(load, NULL, err);
		return err;
	}
	vmcoh_load_finish(load, block, 0);
	return 0;
}

static long server_invalidate(struct file *file, void __user *arg)
{
	struct vmcoh_dev *dev = file->private_data;
	struct vmcoh_range req;

	if (copy_from_user(&req, arg, sizeof(req)))
		return -EFAULT;
	if (!vmcoh_range_valid(&req))
		return -EINVAL;
	if (!server_is(&dev->backing, file))
		return -EPERM;
	return vmcoh_backing_invalidate(dev, req.offset, req.length);
}

long vmcoh_ioctl_server(struct file *file, unsigned int cmd, void __user *arg)
{
	switch (cmd) {
	case VMCOH_IOC_ATTACH:
		return server_attach(file, arg);
	case VMCOH_IOC_DETACH:
		return server_detach_ioctl(file, arg);
	case VMCOH_IOC_RECV:
		return server_recv(file, arg);
	case VMCOH_IOC_REPLY:
		return server_reply(file, arg);
	case VMCOH_IOC_INVALIDATE:
		return server_invalidate(file, arg);
	default:
		return -ENOTTY;
	}
}
