// SPDX-License-Identifier: GPL-2.0
/*
 * The ioctl ABI of uapi/vmcoh.h: one function per command, a short switch.
 *
 * Every input struct is validated in full before anything changes: unknown
 * flags and non-zero reserved words are -EINVAL, so they can acquire a
 * meaning later.  The server's commands are in server.c.  Lock order: see
 * vmcoh.h; ioctls take io_rwsem only through punch and resize.
 */

#include <linux/fs.h>
#include <linux/mm.h>
#include <linux/uaccess.h>

#include "hooks.h"
#include "vmcoh.h"

bool vmcoh_reserved_zero(const __u64 *words, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (words[i])
			return false;
	return true;
}

/*
 * A range of PUNCH_HOLE or INVALIDATE: block-aligned, non-empty, ending
 * inside loff_t (whatever lies beyond EOF is clipped), no flags.
 */
bool vmcoh_range_valid(const struct vmcoh_range *req)
{
	return !req->flags && !req->reserved && req->length &&
	       PAGE_ALIGNED(req->offset) && PAGE_ALIGNED(req->length) &&
	       req->offset <= VMCOH_MAX_OBJECT_SIZE &&
	       req->length <= VMCOH_MAX_OBJECT_SIZE - req->offset;
}

/* The sum of one event counter over every CPU. */
u64 vmcoh_counter_read(struct vmcoh_dev *dev, enum vmcoh_counter counter)
{
	u64 sum = 0;
	int cpu;

	for_each_possible_cpu(cpu)
		sum += per_cpu_ptr(dev->counters, cpu)->events[counter];
	return sum;
}

void vmcoh_read_stats(struct vmcoh_dev *dev, struct vmcoh_stats *stats)
{
	*stats = (struct vmcoh_stats) {
		.faults = vmcoh_counter_read(dev, VMCOH_FAULTS),
		.mkwrite_faults = vmcoh_counter_read(dev, VMCOH_MKWRITE_FAULTS),
		.zero_page_maps = vmcoh_counter_read(dev, VMCOH_ZERO_PAGE_MAPS),
		.zero_page_upgrades =
			vmcoh_counter_read(dev, VMCOH_ZERO_PAGE_UPGRADES),
		.sigbus = vmcoh_counter_read(dev, VMCOH_SIGBUS),
		.entry_lock_waits =
			vmcoh_counter_read(dev, VMCOH_ENTRY_LOCK_WAITS),
		.invalidations = vmcoh_counter_read(dev, VMCOH_INVALIDATIONS),
		.ranged_unmaps = vmcoh_counter_read(dev, VMCOH_RANGED_UNMAPS),
		.entries_removed =
			vmcoh_counter_read(dev, VMCOH_ENTRIES_REMOVED),
		.blocks_allocated =
			vmcoh_counter_read(dev, VMCOH_BLOCKS_ALLOCATED),
		.blocks_freed = vmcoh_counter_read(dev, VMCOH_BLOCKS_FREED),
		.blocks_live = atomic_long_read(&dev->map.nr_blocks),
		.holds_parked = vmcoh_counter_read(dev, VMCOH_HOLDS_PARKED),
		.hold_timeouts = vmcoh_counter_read(dev, VMCOH_HOLD_TIMEOUTS),
		.fault_around_maps =
			vmcoh_counter_read(dev, VMCOH_FAULT_AROUND_MAPS),
		.entries_trimmed =
			vmcoh_counter_read(dev, VMCOH_ENTRIES_TRIMMED),
		.map_pages_faults =
			vmcoh_counter_read(dev, VMCOH_MAP_PAGES_FAULTS),
		.vma_lock_faults =
			vmcoh_counter_read(dev, VMCOH_VMA_LOCK_FAULTS),
	};
}

static long ioctl_get_backing_stats(struct vmcoh_dev *dev, void __user *arg)
{
	struct vmcoh_backing_stats stats = {
		.loads = vmcoh_counter_read(dev, VMCOH_LOADS),
		.loads_published =
			vmcoh_counter_read(dev, VMCOH_LOADS_PUBLISHED),
		.loads_invalidated =
			vmcoh_counter_read(dev, VMCOH_LOADS_INVALIDATED),
		.loads_failed = vmcoh_counter_read(dev, VMCOH_LOADS_FAILED),
		.load_waits = vmcoh_counter_read(dev, VMCOH_LOAD_WAITS),
		.load_timeouts = vmcoh_counter_read(dev, VMCOH_LOAD_TIMEOUTS),
		.server_invalidations =
			vmcoh_counter_read(dev, VMCOH_SERVER_INVALIDATIONS),
		.attaches = vmcoh_counter_read(dev, VMCOH_ATTACHES),
		.blocks_dirtied = vmcoh_counter_read(dev, VMCOH_BLOCKS_DIRTIED),
		.stores = vmcoh_counter_read(dev, VMCOH_STORES),
		.stores_failed = vmcoh_counter_read(dev, VMCOH_STORES_FAILED),
		.drops = vmcoh_counter_read(dev, VMCOH_DROPS),
		.drop_waits = vmcoh_counter_read(dev, VMCOH_DROP_WAITS),
		.blocks_dirty = atomic_long_read(&dev->map.nr_dirty),
		.load_blocks = vmcoh_counter_read(dev, VMCOH_LOAD_BLOCKS),
		.loads_ahead = vmcoh_counter_read(dev, VMCOH_LOADS_AHEAD),
	};

	return copy_to_user(arg, &stats, sizeof(stats)) ? -EFAULT : 0;
}

/*
 * vmcoh_window_stats only grows, at its end (uapi header): a caller built
 * against an older header asks with the smaller size it knows, in @cmd,
 * and gets that much.
 */
static long ioctl_get_window_stats(struct vmcoh_dev *dev, void __user *arg,
				   unsigned int cmd)
{
	struct vmcoh_window_stats stats;

	if (!vmcoh_window_enabled(dev))
		return -ENODEV;
	vmcoh_window_read_stats(dev, &stats);
	return copy_to_user(arg, &stats, _IOC_SIZE(cmd)) ? -EFAULT : 0;
}

/* GET_WINDOW_STATS with the size of this header's structure, or of an older one. */
static bool ioctl_is_window_stats(unsigned int cmd)
{
	unsigned int size = _IOC_SIZE(cmd);

	return (cmd & ~IOCSIZE_MASK) ==
	       (VMCOH_IOC_GET_WINDOW_STATS & ~IOCSIZE_MASK) &&
	       size >= VMCOH_WINDOW_STATS_SIZE_V1 &&
	       size <= sizeof(struct vmcoh_window_stats) &&
	       !(size % sizeof(__u64));
}

static long ioctl_get_info(struct vmcoh_dev *dev, void __user *arg)
{
	struct vmcoh_info info = {
		.abi_version = VMCOH_ABI_VERSION,
		.size = vmcoh_size(dev),
		.block_size = PAGE_SIZE,
		.max_size = (__u64)dev->map.max_blocks << PAGE_SHIFT,
		.max_object_size = VMCOH_MAX_OBJECT_SIZE,
		.features = VMCOH_FEATURE_SEEK_HOLE |
			    VMCOH_FEATURE_PUNCH_HOLE |
			    VMCOH_FEATURE_SET_SIZE |
			    VMCOH_FEATURE_MAP_PRIVATE |
			    VMCOH_FEATURE_BACKING |
			    VMCOH_FEATURE_WRITEBACK |
			    VMCOH_FEATURE_LOAD_RUNS |
			    VMCOH_FEATURE_SERVE |
			    VMCOH_FEATURE_STORE_RUNS,
		.unsafe = vmcoh_unsafe_variant,
		.backing = READ_ONCE(dev->backing.state),
	};

	if (static_branch_unlikely(&vmcoh_test_hooks))
		info.features |= VMCOH_FEATURE_TEST_HOOKS;
	if (vmcoh_window_enabled(dev))
		info.features |= VMCOH_FEATURE_WINDOW;
	if (dev->pmd)
		info.features |= VMCOH_FEATURE_PMD;

	return copy_to_user(arg, &info, sizeof(info)) ? -EFAULT : 0;
}

static long ioctl_set_size(struct vmcoh_dev *dev, void __user *arg)
{
	struct vmcoh_set_size req;

	if (copy_from_user(&req, arg, sizeof(req)))
		return -EFAULT;
	if (req.flags || !vmcoh_reserved_zero(req.reserved, ARRAY_SIZE(req.reserved)))
		return -EINVAL;
	if (!PAGE_ALIGNED(req.size) || req.size > VMCOH_MAX_OBJECT_SIZE)
		return -EINVAL;
	return vmcoh_set_size(dev, req.size);
}

static long ioctl_punch_hole(struct vmcoh_dev *dev, void __user *arg)
{
	struct vmcoh_range req;

	if (copy_from_user(&req, arg, sizeof(req)))
		return -EFAULT;
	if (!vmcoh_range_valid(&req))
		return -EINVAL;
	return vmcoh_punch_hole(dev, req.offset, req.length);
}

static long ioctl_get_stats(struct vmcoh_dev *dev, void __user *arg)
{
	struct vmcoh_stats stats;

	vmcoh_read_stats(dev, &stats);
	return copy_to_user(arg, &stats, sizeof(stats)) ? -EFAULT : 0;
}

/*
 * Commands that change the object, or that make a file its server: they need
 * a file opened for writing, as ftruncate(2) and fallocate(2) do (uapi
 * header, "Permissions").  DETACH, RECV and REPLY need the server's file,
 * which ATTACH made sure was opened for writing.
 */
static bool ioctl_needs_write(unsigned int cmd)
{
	switch (cmd) {
	case VMCOH_IOC_SET_SIZE:
	case VMCOH_IOC_PUNCH_HOLE:
	case VMCOH_IOC_ATTACH:
	case VMCOH_IOC_INVALIDATE:
	case VMCOH_IOC_DROP:
		return true;
	default:
		return false;
	}
}

long vmcoh_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	struct vmcoh_dev *dev = file->private_data;
	void __user *uarg = (void __user *)arg;

	if (ioctl_needs_write(cmd) && !(file->f_mode & FMODE_WRITE))
		return -EBADF;

	if (ioctl_is_window_stats(cmd))
		return ioctl_get_window_stats(dev, uarg, cmd);
	switch (cmd) {
	case VMCOH_IOC_GET_INFO:
		return ioctl_get_info(dev, uarg);
	case VMCOH_IOC_SET_SIZE:
		return ioctl_set_size(dev, uarg);
	case VMCOH_IOC_PUNCH_HOLE:
		return ioctl_punch_hole(dev, uarg);
	case VMCOH_IOC_GET_STATS:
		return ioctl_get_stats(dev, uarg);
	case VMCOH_IOC_HOLD_ARM:
	case VMCOH_IOC_HOLD_WAIT:
	case VMCOH_IOC_HOLD_RELEASE:
		return vmcoh_ioctl_hold(file, cmd, uarg);
	case VMCOH_IOC_GET_BACKING_STATS:
		return ioctl_get_backing_stats(dev, uarg);
	case VMCOH_IOC_ATTACH:
	case VMCOH_IOC_DETACH:
	case VMCOH_IOC_RECV:
	case VMCOH_IOC_REPLY:
	case VMCOH_IOC_SERVE:
	case VMCOH_IOC_INVALIDATE:
	case VMCOH_IOC_DROP:
		return vmcoh_ioctl_server(file, cmd, uarg);
	default:
		return -ENOTTY;
	}
}
