// SPDX-License-Identifier: GPL-2.0
/*
 * The server's channel (uapi/vmcoh.h, "Backing store"): ATTACH, RECV,
 * REPLY, INVALIDATE, DROP, DETACH, and what happens when the server dies.
 *
 * backing.inflight maps request ids to the requests (LOADs and STOREs) not
 * yet answered, and its xa_lock is the channel's lock: it also protects the
 * state, the server's file and the queue of requests not yet received.  A
 * request leaves inflight exactly once - answered (REPLY), timed out
 * (vmcoh_server_cancel()), or failed because the server went away - and
 * whoever takes it out finishes it with vmcoh_req_finish(), outside the
 * lock.
 *
 * The server's file is the channel, and the process that ATTACHed it the
 * server: when that process holds no descriptor of it any more (closed,
 * or exited) without DETACH, the server died, which orphans the object
 * (see the uapi header) - whoever else still holds the file.
 *
 * Lock order: see vmcoh.h.  The channel's lock is a leaf spinlock.  REPLY
 * copies the answer from the server's memory, or pins it, holding nothing,
 * before it takes the request out of inflight, and then takes an entry
 * lock to install it (backing.c), copying from the pinned pages under
 * blocks.xa_lock, where nothing can fault; RECV copies a STORE's contents
 * to the server holding nothing.  ATTACH publishes a drop of the whole object
 * (drop_mutex) and then takes io_rwsem exclusive, DETACH takes io_rwsem
 * exclusive; DROP is writeback.c's.
 */

#include <linux/fdtable.h>
#include <linux/highmem.h>
#include <linux/poll.h>
#include <linux/uaccess.h>

#include "trace.h"
#include "vmcoh.h"

void vmcoh_backing_init(struct vmcoh_backing *backing)
{
	backing->state = VMCOH_BACKING_NONE;
	backing->server = NULL;
	INIT_LIST_HEAD(&backing->queue);
	xa_init_flags(&backing->inflight, XA_FLAGS_ALLOC1);
	backing->next_id = 0;
	init_waitqueue_head(&backing->recv_wait);
	backing->writable = false;
	mutex_init(&backing->wb_mutex);
	mutex_init(&backing->drop_mutex);
	backing->dropping = false;
	init_waitqueue_head(&backing->drop_wait);
	backing->ra_async = ULONG_MAX;
}

void vmcoh_backing_destroy(struct vmcoh_backing *backing)
{
	put_pid(backing->receiver);
	/* The server's release failed every request, and no file is open. */
	WARN_ON_ONCE(!xa_empty(&backing->inflight));
	xa_destroy(&backing->inflight);
}

static bool server_is(struct vmcoh_backing *backing, struct file *file)
{
	return READ_ONCE(backing->server) == file;
}

/**
 * vmcoh_server_submit - queue a request for the server
 * @dev: the device
 * @load: a new request (a load already in its entry)
 *
 * Return: 0, or -EIO if no server is attached (or, for a STORE, no
 * writable one), or -ENOMEM.
 */
int vmcoh_server_submit(struct vmcoh_dev *dev, struct vmcoh_req *load)
{
	struct vmcoh_backing *backing = &dev->backing;
	u32 id;
	int err = -EIO;

	bool store = load->op == VMCOH_REQ_STORE;

	xa_lock(&backing->inflight);
	if (backing->state == VMCOH_BACKING_SERVED &&
	    (!store || backing->writable)) {
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
		trace_vmcoh_req_submit(load);
	}
	xa_unlock(&backing->inflight);
	if (err < 0)
		return err == -ENOMEM ? err : -EIO;
	vmcoh_count(dev, store ? VMCOH_STORES : VMCOH_LOADS);
	if (!store)
		vmcoh_count_add(dev, VMCOH_LOAD_BLOCKS, load->nr);
	wake_up_interruptible(&backing->recv_wait);
	return 0;
}

/* Take @load out of inflight if it is still there; under the lock. */
static bool server_take_locked(struct vmcoh_backing *backing,
			       struct vmcoh_req *load)
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
 * @load: a request, referenced by the caller
 * @err: why: -ETIMEDOUT
 */
void vmcoh_server_cancel(struct vmcoh_dev *dev, struct vmcoh_req *load,
			 int err)
{
	struct vmcoh_backing *backing = &dev->backing;
	bool taken;

	xa_lock(&backing->inflight);
	taken = server_take_locked(backing, load);
	xa_unlock(&backing->inflight);
	if (taken) {
		vmcoh_count(dev, VMCOH_LOAD_TIMEOUTS);
		vmcoh_req_finish(load, NULL, err);
	}
}

/*
 * The server of @file is gone (closed its file, or DETACH): switch to
 * @state and fail every request it has not answered.  Nothing happens if
 * @file is not the server's (any more).
 */
static void server_detach(struct vmcoh_dev *dev, struct file *file,
			  unsigned int state)
{
	struct vmcoh_backing *backing = &dev->backing;
	XA_STATE(xas, &backing->inflight, 0);
	struct vmcoh_req *load, *next;
	struct pid *receiver;
	LIST_HEAD(failed);

	xas_lock(&xas);
	if (backing->server != file) {
		xas_unlock(&xas);
		return;
	}
	WRITE_ONCE(backing->state, state);
	WRITE_ONCE(backing->server, NULL);
	receiver = backing->receiver;
	WRITE_ONCE(backing->receiver, NULL);
	backing->receivers = false;
	xas_for_each(&xas, load, U32_MAX) {
		/* XA_FLAGS_ALLOC1 keeps index 0 busy with a zero entry. */
		if (xas_retry(&xas, load))
			continue;
		xas_store(&xas, NULL);
		list_del_init(&load->queued);
		list_add_tail(&load->queued, &failed);
	}
	xas_unlock(&xas);
	put_pid(receiver);
	wake_up_all(&backing->recv_wait);

	list_for_each_entry_safe(load, next, &failed, queued) {
		list_del_init(&load->queued);
		vmcoh_req_finish(load, NULL, -EIO);
	}
}

/* A file of /dev/vmcoh is closed for the last time. */
void vmcoh_server_release(struct file *file)
{
	struct vmcoh_dev *dev = file->private_data;

	if (server_is(&dev->backing, file))
		server_detach(dev, file, VMCOH_BACKING_ORPHANED);
}

static int server_fd_is(const void *file, struct file *f, unsigned int fd)
{
	return f == file;
}

/**
 * vmcoh_server_flush - a descriptor of @file in table @id is closed
 * @file: a file of /dev/vmcoh
 * @id: the descriptor table (->flush's owner)
 *
 * The process that ATTACHed serves.  Once its descriptor table holds no
 * descriptor of the server's file - closed, or the process exited - the
 * server is gone, as at the last close, even if a child that inherited
 * the file keeps it open: its requests would otherwise wait for nobody
 * until load_timeout_ms.  The descriptor being closed has already left the
 * table when ->flush runs.
 */
void vmcoh_server_flush(struct file *file, fl_owner_t id)
{
	struct vmcoh_dev *dev = file->private_data;
	struct vmcoh_backing *backing = &dev->backing;

	if (!server_is(backing, file) || READ_ONCE(backing->server_files) != id)
		return;
	if (iterate_fd(id, 0, server_fd_is, file))
		return;
	server_detach(dev, file, VMCOH_BACKING_ORPHANED);
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

/* ATTACH and DETACH take a struct vmcoh_attach: its flags, or -errno. */
static long attach_arg(void __user *arg, u64 valid)
{
	struct vmcoh_attach req;

	if (copy_from_user(&req, arg, sizeof(req)))
		return -EFAULT;
	if ((req.flags & ~valid) ||
	    !vmcoh_reserved_zero(req.reserved, ARRAY_SIZE(req.reserved)))
		return -EINVAL;
	return req.flags;
}

static long server_attach(struct file *file, void __user *arg)
{
	struct vmcoh_dev *dev = file->private_data;
	struct vmcoh_backing *backing = &dev->backing;
	unsigned int was;
	bool writable, regions, store_runs;
	long ret;

	ret = attach_arg(arg, VMCOH_ATTACH_WRITABLE | VMCOH_ATTACH_REGIONS |
			 VMCOH_ATTACH_STORE_RUNS);
	if (ret < 0)
		return ret;
	writable = ret & VMCOH_ATTACH_WRITABLE;
	regions = ret & VMCOH_ATTACH_REGIONS;
	store_runs = ret & VMCOH_ATTACH_STORE_RUNS;
	if (store_runs && !writable)
		return -EINVAL;

	/*
	 * Faults, read(2) and write(2) wait while the object changes hands,
	 * as for a DROP of all of it.  A store into a hole that saw the
	 * object plain has then either published its block before we look
	 * (-EBUSY), or cannot dirty it: the dirty mark comes in
	 * ->page_mkwrite, which waits now, and the block is dropped below.
	 * io_rwsem: write(2) cannot add a block while we look.
	 */
	ret = vmcoh_drop_begin(dev);
	if (ret)
		return ret;
	down_write(&dev->io_rwsem);
	xa_lock(&backing->inflight);
	was = backing->state;
	if (was == VMCOH_BACKING_SERVED ||
	    (was == VMCOH_BACKING_NONE &&
	     atomic_long_read(&dev->map.nr_blocks)) ||
	    (!writable && atomic_long_read(&dev->map.nr_dirty))) {
		ret = -EBUSY;
	} else {
		WRITE_ONCE(backing->writable, writable);
		WRITE_ONCE(backing->regions, regions);
		WRITE_ONCE(backing->store_runs, store_runs);
		WRITE_ONCE(backing->ra_blocks, 0);
		WRITE_ONCE(backing->ra_async, ULONG_MAX);
		WRITE_ONCE(backing->state, VMCOH_BACKING_SERVED);
		WRITE_ONCE(backing->server, file);
		WRITE_ONCE(backing->server_files, current->files);
	}
	xa_unlock(&backing->inflight);
	/*
	 * Holes may be mapped to the zero page: the server's data goes there.
	 * A plain object has no dirty block, and none can be marked meanwhile
	 * (see above), so nothing is kept.
	 */
	if (!ret && was == VMCOH_BACKING_NONE)
		WARN_ON_ONCE(!vmcoh_backing_drop_all(dev));
	up_write(&dev->io_rwsem);
	vmcoh_drop_end(dev);
	if (!ret)
		vmcoh_count(dev, VMCOH_ATTACHES);
	return ret;
}

static long server_detach_ioctl(struct file *file, void __user *arg)
{
	struct vmcoh_dev *dev = file->private_data;
	long ret = attach_arg(arg, 0);
	bool dropped;

	if (ret)
		return ret;
	if (!server_is(&dev->backing, file))
		return -EPERM;
	/* Orphaned meanwhile: loads fail rather than read as holes. */
	server_detach(dev, file, VMCOH_BACKING_ORPHANED);
	down_write(&dev->io_rwsem);
	/* Dirty blocks stay, orphaned, for the next server (uapi header). */
	dropped = vmcoh_backing_drop_all(dev);
	/* Unless a new server attached before we took io_rwsem. */
	xa_lock(&dev->backing.inflight);
	if (dropped && dev->backing.state == VMCOH_BACKING_ORPHANED)
		WRITE_ONCE(dev->backing.state, VMCOH_BACKING_NONE);
	xa_unlock(&dev->backing.inflight);
	up_write(&dev->io_rwsem);
	return 0;
}

/*
 * Who receives the server's requests: one task, or more than one.  A task
 * that alone answers must not wait for an answer (see
 * vmcoh_server_waits_on_itself()).
 */
static void server_note_receiver(struct vmcoh_backing *backing,
				 struct file *file)
{
	struct pid *pid = get_task_pid(current, PIDTYPE_PID);

	xa_lock(&backing->inflight);
	if (backing->server == file && !backing->receivers) {
		if (!backing->receiver) {
			/* Read locklessly by vmcoh_server_waits_on_itself(). */
			WRITE_ONCE(backing->receiver, pid);
			pid = NULL;
		} else if (backing->receiver != pid) {
			backing->receivers = true;
		}
	}
	xa_unlock(&backing->inflight);
	put_pid(pid);
}

/**
 * vmcoh_server_waits_on_itself - would current wait for its own answer?
 * @dev: the device
 *
 * True if current is the one task that has received the server's requests:
 * a load or a range it waited for would need a request that only it can
 * receive and answer (a LOAD of its own, or the STOREs of a reclaim), and
 * it would wait for load_timeout_ms, or for ever.
 */
bool vmcoh_server_waits_on_itself(struct vmcoh_dev *dev)
{
	struct vmcoh_backing *backing = &dev->backing;
	bool self;

	if (!READ_ONCE(backing->receiver))
		return false;
	xa_lock(&backing->inflight);
	self = backing->state == VMCOH_BACKING_SERVED && !backing->receivers &&
	       backing->receiver == task_pid(current);
	xa_unlock(&backing->inflight);
	return self;
}

/* Wait for a request and take it off the queue, with a reference. */
static struct vmcoh_req *server_next(struct vmcoh_backing *backing,
				     struct file *file, bool nonblock)
{
	struct vmcoh_req *load;
	int err;

	for (;;) {
		xa_lock(&backing->inflight);
		if (backing->server != file) {
			xa_unlock(&backing->inflight);
			return ERR_PTR(-EPERM);
		}
		load = list_first_entry_or_null(&backing->queue,
						struct vmcoh_req, queued);
		if (load) {
			list_del_init(&load->queued);
			vmcoh_req_get(load);
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

/* Copy a STORE's contents to the server's buffer; 0 or -EFAULT. */
static int recv_store_data(struct vmcoh_req *store, u64 buf)
{
	unsigned long left = 0;
	unsigned int i;
	void *src;

	for (i = 0; i < store->nr && !left; i++) {
		src = kmap_local_page(store->copies[i]);
		left = copy_to_user(u64_to_user_ptr(buf + i * PAGE_SIZE), src,
				    PAGE_SIZE);
		kunmap_local(src);
	}
	return left ? -EFAULT : 0;
}

/*
 * Check a request slot the server passed in: its flags (but those RECV
 * takes, @flags), its reserved words, and a STORE buffer if one may be
 * needed.
 */
static int recv_slot_valid(struct vmcoh_backing *backing, struct file *file,
			   const struct vmcoh_request *req, u64 flags)
{
	if ((req->flags & ~flags) ||
	    !vmcoh_reserved_zero(req->reserved, ARRAY_SIZE(req->reserved)))
		return -EINVAL;
	/* A writable server may be sent a STORE: it must take the data. */
	if (READ_ONCE(backing->writable) && server_is(backing, file) &&
	    !req->data)
		return -EINVAL;
	return 0;
}

/* A request taken off the queue but not delivered goes back to its head. */
static void recv_undo(struct vmcoh_backing *backing, struct vmcoh_req *r)
{
	xa_lock(&backing->inflight);
	if (xa_load(&backing->inflight, r->id) == r)
		list_add(&r->queued, &backing->queue);
	xa_unlock(&backing->inflight);
}

/*
 * Take the next request into @req, a valid slot, copying a STORE's
 * contents to its buffer; waits for one unless @nonblock.  Return the
 * request, referenced, or an ERR_PTR: -EAGAIN, -EINTR, -EPERM, -EFAULT
 * (then it is back on the queue).
 */
static struct vmcoh_req *recv_one(struct file *file, struct vmcoh_request *req,
				  bool nonblock)
{
	struct vmcoh_dev *dev = file->private_data;
	struct vmcoh_req *r;

	r = server_next(&dev->backing, file, nonblock);
	if (IS_ERR(r))
		return r;
	trace_vmcoh_req_recv(r);
	req->id = r->id;
	req->op = r->op;
	req->offset = (u64)r->index << PAGE_SHIFT;
	req->length = (u64)r->nr << PAGE_SHIFT;
	if (r->op == VMCOH_REQ_STORE && recv_store_data(r, req->data)) {
		recv_undo(&dev->backing, r);
		vmcoh_req_put(r);
		return ERR_PTR(-EFAULT);
	}
	req->data = 0;
	return r;
}

static long server_recv(struct file *file, void __user *arg)
{
	struct vmcoh_dev *dev = file->private_data;
	struct vmcoh_request req;
	struct vmcoh_req *r;
	int err = 0;

	if (copy_from_user(&req, arg, sizeof(req)))
		return -EFAULT;
	err = recv_slot_valid(&dev->backing, file, &req, VMCOH_RECV_NONBLOCK);
	if (err)
		return err;
	server_note_receiver(&dev->backing, file);
	r = recv_one(file, &req, req.flags & VMCOH_RECV_NONBLOCK);
	if (IS_ERR(r))
		return PTR_ERR(r);
	if (copy_to_user(arg, &req, sizeof(req))) {
		recv_undo(&dev->backing, r);
		err = -EFAULT;
	}
	vmcoh_req_put(r);
	return err;
}

/*
 * A LOAD's answer, brought in before the request is taken: @nr pages with
 * its contents, either blocks copied from the server's memory, or - with a
 * window, and a page-aligned buffer - the server's own pages, pinned, whose
 * contents publication copies straight into the window's range: one copy
 * of each block instead of two.
 */
struct reply_data {
	struct page **pages;
	unsigned int nr;
	bool pinned;
};

/* Let go of what reply_data_get() brought in and publication left. */
static void reply_data_put(struct vmcoh_dev *dev, struct reply_data *rd)
{
	unsigned int i;

	if (rd->pinned) {
		unpin_user_pages(rd->pages, rd->nr);
	} else {
		for (i = 0; i < rd->nr; i++) {
			if (rd->pages[i])
				vmcoh_block_free(dev, rd->pages[i]);
		}
	}
	kvfree(rd->pages);
	rd->pages = NULL;
}

/* Copy @rd->nr blocks from the server's memory at @data. */
static int reply_copy(struct vmcoh_dev *dev, u64 data, struct reply_data *rd)
{
	struct page *block;
	unsigned int i;
	void *dst;
	int err;

	for (i = 0; i < rd->nr; i++) {
		/* Every byte is written, or the block is freed unseen. */
		block = vmcoh_block_alloc(dev, false);
		if (IS_ERR(block))
			return PTR_ERR(block);
		rd->pages[i] = block;
		dst = kmap_local_page(block);
		err = copy_from_user(dst, u64_to_user_ptr(data + i * PAGE_SIZE),
				     PAGE_SIZE) ? -EFAULT : 0;
		kunmap_local(dst);
		if (err)
			return err;
		cond_resched();
	}
	return 0;
}

/*
 * Bring in the @nr blocks of a LOAD's answer from the server's memory at
 * @data.  Return 0 or -errno; on error nothing is left to put.
 */
static int reply_data_get(struct vmcoh_dev *dev, u64 data, unsigned int nr,
			  struct reply_data *rd)
{
	int got, err;

	rd->nr = nr;
	rd->pinned = false;
	rd->pages = kvcalloc(nr, sizeof(*rd->pages), GFP_KERNEL);
	if (!rd->pages)
		return -ENOMEM;
	if (vmcoh_window_enabled(dev) && PAGE_ALIGNED(data)) {
		got = pin_user_pages_fast(data, nr, 0, rd->pages);
		if (got == nr) {
			rd->pinned = true;
			return 0;
		}
		if (got > 0)
			unpin_user_pages(rd->pages, got);
		kvfree(rd->pages);
		rd->pages = NULL;
		return got < 0 ? got : -EFAULT;
	}
	err = reply_copy(dev, data, rd);
	if (err)
		reply_data_put(dev, rd);
	return err;
}

/* Take the server's answer @req, as REPLY does: 0 or -errno. */
static int reply_one(struct file *file, const struct vmcoh_reply *req)
{
	struct vmcoh_dev *dev = file->private_data;
	struct vmcoh_backing *backing = &dev->backing;
	struct reply_data rd = { };
	unsigned int nr = 0;
	struct vmcoh_req *r;
	bool ok;
	int err;

	if (req->flags ||
	    !vmcoh_reserved_zero(req->reserved, ARRAY_SIZE(req->reserved)))
		return -EINVAL;
	if (req->error && (req->error < -MAX_ERRNO || req->error > -1 ||
			   req->data || req->length))
		return -EINVAL;
	/* A LOAD's answer is whole blocks, a STORE's has none. */
	if (!req->error && (req->length || req->data) &&
	    (!req->length || req->length % PAGE_SIZE ||
	     req->length > VMCOH_RANGE_SIZE))
		return -EINVAL;
	if (req->id > U32_MAX)
		return -ENOENT;

	/*
	 * A LOAD's answer is brought in while the request is still in flight:
	 * a copy or pin that blocks (a buffer that faults on userfaultfd, or
	 * on a mapping of this very object) must not keep it from timing out.
	 */
	if (req->length) {
		nr = req->length >> PAGE_SHIFT;
		err = reply_data_get(dev, req->data, nr, &rd);
		if (err)
			return err;
	}

	xa_lock(&backing->inflight);
	if (backing->server != file) {
		err = -EPERM;
		goto refused;
	}
	r = xa_load(&backing->inflight, req->id);
	ok = !r || req->error ||
	     (r->op == VMCOH_REQ_LOAD ? nr == r->nr : !nr);
	/* Only what RECV delivered can be answered. */
	if (!r || !list_empty(&r->queued) || !ok ||
	    !server_take_locked(backing, r)) {
		err = ok ? -ENOENT : -EINVAL;
		goto refused;
	}
	xa_unlock(&backing->inflight);

	/* The request is ours to finish now, whatever happens. */
	if (req->error || r->op == VMCOH_REQ_STORE) {
		vmcoh_req_finish(r, NULL, req->error ? -EIO : 0);
		return 0;
	}
	if (rd.pinned) {
		vmcoh_load_finish_copy(r, rd.pages);
		reply_data_put(dev, &rd);
	} else {
		/* Every block goes in or is freed. */
		vmcoh_load_finish(r, rd.pages, 0);
		kvfree(rd.pages);
	}
	return 0;

refused:
	xa_unlock(&backing->inflight);
	if (rd.pages)
		reply_data_put(dev, &rd);
	return err;
}

static long server_reply(struct file *file, void __user *arg)
{
	struct vmcoh_reply req;

	if (copy_from_user(&req, arg, sizeof(req)))
		return -EFAULT;
	if (req.result)
		return -EINVAL;
	return reply_one(file, &req);
}

/*
 * SERVE's replies: take each in turn, setting its result.  Return how many
 * were taken, or -EFAULT if the array cannot be read or written, -EPERM
 * if the file is not the server's.
 */
static long serve_replies(struct file *file, u64 uptr, u32 nr)
{
	struct vmcoh_reply __user *replies = u64_to_user_ptr(uptr);
	struct vmcoh_reply req;
	u32 i;

	for (i = 0; i < nr; i++) {
		if (copy_from_user(&req, &replies[i], sizeof(req)))
			return -EFAULT;
		req.result = reply_one(file, &req);
		if (req.result == -EPERM)
			return -EPERM;
		if (put_user(req.result, &replies[i].result))
			return -EFAULT;
	}
	return nr;
}

/*
 * SERVE's requests: the first as RECV takes it (waiting unless @flags has
 * VMCOH_RECV_NONBLOCK), then those queued, into the array at @uptr.
 * Return how many were delivered, or -errno if none was.
 */
static long serve_requests(struct file *file, u64 uptr, u32 nr, u64 flags)
{
	struct vmcoh_backing *backing =
		&((struct vmcoh_dev *)file->private_data)->backing;
	struct vmcoh_request __user *slots = u64_to_user_ptr(uptr);
	struct vmcoh_req **taken;
	struct vmcoh_request *reqs;
	long ret = 0;
	u32 got = 0;
	int err;

	if (!nr)
		return 0;
	reqs = kvmalloc_array(nr, sizeof(*reqs), GFP_KERNEL);
	taken = kvmalloc_array(nr, sizeof(*taken), GFP_KERNEL);
	if (!reqs || !taken) {
		ret = -ENOMEM;
		goto out;
	}
	if (copy_from_user(reqs, slots, nr * sizeof(*reqs))) {
		ret = -EFAULT;
		goto out;
	}
	for (got = 0; got < nr; got++) {
		err = recv_slot_valid(backing, file, &reqs[got], 0);
		if (err) {
			ret = err;
			goto out;
		}
	}
	server_note_receiver(backing, file);
	for (got = 0; got < nr; got++) {
		taken[got] = recv_one(file, &reqs[got],
				      got || (flags & VMCOH_RECV_NONBLOCK));
		if (IS_ERR(taken[got])) {
			/* The queue is empty, or this one failed: stop. */
			err = PTR_ERR(taken[got]);
			if (!got && err != -EAGAIN)
				ret = err;
			break;
		}
	}
	if (got && copy_to_user(slots, reqs, got * sizeof(*reqs))) {
		ret = -EFAULT;
		/* Nothing delivered: back to the head, in order. */
		while (got--) {
			recv_undo(backing, taken[got]);
			vmcoh_req_put(taken[got]);
		}
		got = 0;
	}
	if (!ret)
		ret = got;
	while (got--)
		vmcoh_req_put(taken[got]);
out:
	kvfree(taken);
	kvfree(reqs);
	return ret;
}

static long server_serve(struct file *file, void __user *arg)
{
	struct vmcoh_serve __user *uarg = arg;
	struct vmcoh_serve req;
	long replied, received;

	if (copy_from_user(&req, arg, sizeof(req)))
		return -EFAULT;
	if ((req.flags & ~VMCOH_RECV_NONBLOCK) ||
	    !vmcoh_reserved_zero(req.reserved, ARRAY_SIZE(req.reserved)) ||
	    req.nr_replies > VMCOH_SERVE_MAX ||
	    req.nr_requests > VMCOH_SERVE_MAX)
		return -EINVAL;
	if (!server_is(&((struct vmcoh_dev *)file->private_data)->backing,
		       file))
		return -EPERM;

	replied = serve_replies(file, req.replies, req.nr_replies);
	if (replied < 0)
		return replied;
	if (put_user((u32)replied, &uarg->replied))
		return -EFAULT;
	received = serve_requests(file, req.requests, req.nr_requests,
				  req.flags);
	if (received < 0)
		return received;
	if (put_user((u32)received, &uarg->received))
		return -EFAULT;
	return received;
}

/* INVALIDATE and DROP take a range of the object. */
static long server_range(struct file *file, void __user *arg, bool drop)
{
	struct vmcoh_dev *dev = file->private_data;
	struct vmcoh_range req;

	if (copy_from_user(&req, arg, sizeof(req)))
		return -EFAULT;
	if (!vmcoh_range_valid(&req))
		return -EINVAL;
	if (!server_is(&dev->backing, file))
		return -EPERM;
	if (drop)
		return vmcoh_drop(dev, req.offset, req.length);
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
	case VMCOH_IOC_SERVE:
		return server_serve(file, arg);
	case VMCOH_IOC_INVALIDATE:
		return server_range(file, arg, false);
	case VMCOH_IOC_DROP:
		return server_range(file, arg, true);
	default:
		return -ENOTTY;
	}
}
