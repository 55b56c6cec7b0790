// SPDX-License-Identifier: GPL-2.0
/*
 * The device: module parameters, /dev/vmcoh, its file operations, and the
 * one address space that every open shares.
 *
 * unmap_mapping_range() finds VMAs through mapping->i_mmap.  A character
 * device's files default to the mapping of the device *node's* inode, so a
 * second node for the same device (mknod, a container's /dev) would get
 * VMAs that an invalidation never sees.  As DRM does (drm_file.c), every
 * open points f_mapping at the mapping of one inode on a private
 * pseudo-filesystem, before any mmap can happen.
 *
 * The core calls ->huge_fault only for DAX mappings, so with 2 MiB
 * mappings that inode is S_DAX, as the inode of a device-dax file is
 * (drivers/dax/device.c): vma_is_dax() then holds, while GUP, which looks
 * at the file's own inode, a character device, still treats it as device
 * memory and allows long-term pins.  Its page cache stays empty.
 *
 * Lock order: see vmcoh.h.  Nothing here takes locks of its own; module
 * init and exit run with no file open.
 */

#include <linux/fs.h>
#include <linux/log2.h>
#include <linux/miscdevice.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/mount.h>
#include <linux/pseudo_fs.h>

#include "compat.h"
#include "hooks.h"
#include "vmcoh.h"

static unsigned int size_mb = 64;
module_param(size_mb, uint, 0444);
MODULE_PARM_DESC(size_mb, "Initial size of the object in MiB (default 64)");

static unsigned int max_mb = 512;
module_param(max_mb, uint, 0444);
MODULE_PARM_DESC(max_mb,
		 "Cap on allocated blocks in MiB; beyond it allocation fails with ENOSPC (default 512)");

static unsigned int fault_around;
module_param(fault_around, uint, 0444);
MODULE_PARM_DESC(fault_around,
		 "Pages a read fault maps around itself: a power of two up to 32, 1 for none (default 0: 16, or 1 with test_hooks=1)");

static bool pmd = true;
module_param(pmd, bool, 0444);
MODULE_PARM_DESC(pmd,
		 "With a window, map each fully resident 2 MiB region by one PMD where a mapping allows (default 1; needs FS_DAX and THP)");

static bool test_hooks;
module_param(test_hooks, bool, 0444);
MODULE_PARM_DESC(test_hooks,
		 "Enable the hold-point ioctls and unsafe variants, for testing the harness (default 0)");

static char *unsafe = "";
module_param(unsafe, charp, 0444);
MODULE_PARM_DESC(unsafe,
		 "With test_hooks=1, run a broken protocol: lookup_before_lock, unmap_before_remove, no_size_recheck, no_even_cows, free_before_unmap, write_no_invalidate, load_after_invalidate, invalidate_waits_load, drop_under_entry_lock, drop_skips_writeback, reclaim_in_fault, pmd_downgrade_no_unmap, wait_holding_mmap_lock, zero_unmap_after_publish, reuse_pinned, no_store_wait or writeback_copy_before_unmap");

#define VMCOH_FS_MAGIC	0x766d636f	/* "vmco" */

static struct vmcoh_dev vmcoh;
static struct vfsmount *vmcoh_mnt;
static int vmcoh_mnt_count;
static struct inode *vmcoh_inode;

static int vmcoh_init_fs_context(struct fs_context *fc)
{
	return init_pseudo(fc, VMCOH_FS_MAGIC) ? 0 : -ENOMEM;
}

/*
 * No .owner: the mount pinned below lives exactly as long as the module,
 * and a module reference held by it would make rmmod impossible.
 */
static struct file_system_type vmcoh_fs_type = {
	.name		 = "vmcoh",
	.init_fs_context = vmcoh_init_fs_context,
	.kill_sb	 = kill_anon_super,
};

static int vmcoh_open(struct inode *inode, struct file *file)
{
	file->private_data = &vmcoh;
	file->f_mapping = vmcoh.mapping;
	return 0;
}

static int vmcoh_flush(struct file *file, fl_owner_t id)
{
	vmcoh_hooks_flush_file(file, id);
	vmcoh_server_flush(file, id);
	return 0;
}

/* The last close: if this file is the server's, the server is gone. */
static int vmcoh_release(struct inode *inode, struct file *file)
{
	vmcoh_server_release(file);
	return 0;
}

/* Dirty blocks of a backed object go back to the server (writeback.c). */
static int vmcoh_fsync(struct file *file, loff_t start, loff_t end,
		       int datasync)
{
	struct vmcoh_dev *dev = file->private_data;

	if (!vmcoh_backed(dev) || start > end)
		return 0;
	return vmcoh_writeback(dev, start >> PAGE_SHIFT, end >> PAGE_SHIFT);
}

static loff_t vmcoh_llseek(struct file *file, loff_t offset, int whence)
{
	struct vmcoh_dev *dev = file->private_data;
	loff_t pos;

	switch (whence) {
	case SEEK_DATA:
	case SEEK_HOLE:
		/* A backed object has no holes, resident or not. */
		if (vmcoh_backed(dev)) {
			if (offset < 0 || offset >= vmcoh_size(dev))
				return -ENXIO;
			pos = whence == SEEK_DATA ? offset : vmcoh_size(dev);
			return vfs_setpos(file, pos, vmcoh_size(dev));
		}
		pos = vmcoh_blockmap_seek(&dev->map, offset, whence);
		if (pos < 0)
			return pos;
		return vfs_setpos(file, pos, vmcoh_size(dev));
	default:
		return fixed_size_llseek(file, offset, whence, vmcoh_size(dev));
	}
}

static int vmcoh_mmap(struct file *file, struct vm_area_struct *vma)
{
	struct vmcoh_dev *dev = file->private_data;

	/* Without a writable server it is read-only (see the uapi header). */
	if (vmcoh_backed(dev) && !vmcoh_writable(dev) &&
	    (vma->vm_flags & VM_SHARED)) {
		if (vma->vm_flags & VM_WRITE)
			return -EACCES;
		vm_flags_clear(vma, VM_MAYWRITE);
	}
	/*
	 * vm_insert_page() must not have to set VM_MIXEDMAP from a fault,
	 * and VM_MIXEDMAP keeps mlock, NUMA hinting and khugepaged away
	 * from pages that are not in a page cache.  VM_DONTDUMP, as DRM's
	 * mappings have it: a core dump would read every page, loading each
	 * from the server and filling every hole of a sparse object.
	 */
	vm_flags_set(vma, VM_MIXEDMAP | VM_DONTDUMP);
	vma->vm_ops = &vmcoh_vm_ops;
	return 0;
}

static const struct file_operations vmcoh_fops = {
	.owner		= THIS_MODULE,
	.open		= vmcoh_open,
	.flush		= vmcoh_flush,
	.release	= vmcoh_release,
	.poll		= vmcoh_server_poll,
	.llseek		= vmcoh_llseek,
	.read_iter	= vmcoh_read_iter,
	.write_iter	= vmcoh_write_iter,
	/*
	 * splice(2) and sendfile(2), by way of read(2) and write(2).  Not
	 * copy_file_range(2): the VFS takes only regular files there
	 * (generic_file_rw_checks()), and says -EINVAL for a device.
	 */
	.splice_read	= vmcoh_splice_read,
	.splice_write	= iter_file_splice_write,
	.mmap		= vmcoh_mmap,
	/* 2 MiB-aligned addresses for 2 MiB mappings, as DAX files get. */
	.get_unmapped_area = thp_get_unmapped_area,
	.fsync		= vmcoh_fsync,
	.unlocked_ioctl	= vmcoh_ioctl,
	.compat_ioctl	= compat_ptr_ioctl,
};

static struct miscdevice vmcoh_misc = {
	.minor	= MISC_DYNAMIC_MINOR,
	.name	= "vmcoh",
	.fops	= &vmcoh_fops,
	.mode	= 0600,
};

static int vmcoh_mapping_init(void)
{
	int err;

	err = simple_pin_fs(&vmcoh_fs_type, &vmcoh_mnt, &vmcoh_mnt_count);
	if (err)
		return err;
	vmcoh_inode = alloc_anon_inode(vmcoh_mnt->mnt_sb);
	if (IS_ERR(vmcoh_inode)) {
		simple_release_fs(&vmcoh_mnt, &vmcoh_mnt_count);
		return PTR_ERR(vmcoh_inode);
	}
	if (vmcoh.pmd)
		vmcoh_inode->i_flags |= S_DAX;
	vmcoh.mapping = vmcoh_inode->i_mapping;
	return 0;
}

static void vmcoh_mapping_exit(void)
{
	iput(vmcoh_inode);
	simple_release_fs(&vmcoh_mnt, &vmcoh_mnt_count);
}

static int __init vmcoh_init(void)
{
	u64 size = (u64)size_mb << 20;
	int err;

	if (size > VMCOH_MAX_OBJECT_SIZE || !max_mb) {
		pr_err("vmcoh: size_mb must be at most %llu and max_mb non-zero\n",
		       VMCOH_MAX_OBJECT_SIZE >> 20);
		return -EINVAL;
	}
	if (fault_around && (!is_power_of_2(fault_around) ||
			     fault_around > VMCOH_FAULT_AROUND_MAX)) {
		pr_err("vmcoh: fault_around must be a power of two up to %d\n",
		       VMCOH_FAULT_AROUND_MAX);
		return -EINVAL;
	}
	/*
	 * Hold points count on one fault per page, unless a test that parks
	 * fault-around itself asks for it.
	 */
	vmcoh.fault_around = fault_around ?: test_hooks ? 1 : 16;
	vmcoh.load_timeout_ms = -1;	/* the module parameter, read live */

	err = vmcoh_hooks_init(test_hooks, unsafe);
	if (err)
		return err;

	init_rwsem(&vmcoh.io_rwsem);
	vmcoh_backing_init(&vmcoh.backing);
	err = vmcoh_entries_init(&vmcoh.entries, &vmcoh_entry_loads);
	if (err)
		goto err_hooks;
	vmcoh_blockmap_init(&vmcoh.map, size,
			    (unsigned long)max_mb << (20 - PAGE_SHIFT));

	err = -ENOMEM;
	vmcoh.counters = alloc_percpu(struct vmcoh_counters);
	if (!vmcoh.counters)
		goto err_entries;
	err = vmcoh_window_init(&vmcoh);
	if (err)
		goto err_counters;
	/* The window bounds blocks instead. */
	if (vmcoh_window_enabled(&vmcoh))
		vmcoh.map.max_blocks = vmcoh.window.nr_ranges *
				       VMCOH_RANGE_PAGES;
	vmcoh.pmd = pmd && vmcoh_window_enabled(&vmcoh) &&
		    vmcoh_pmd_supported();
	err = -ENOMEM;
	vmcoh.zero_page = alloc_page(GFP_KERNEL | __GFP_ZERO);
	if (!vmcoh.zero_page)
		goto err_window;
	err = vmcoh_mapping_init();
	if (err)
		goto err_zero_page;
	err = misc_register(&vmcoh_misc);
	if (err)
		goto err_mapping;
	return 0;

err_mapping:
	vmcoh_window_stop(&vmcoh);
	vmcoh_mapping_exit();
err_zero_page:
	put_page(vmcoh.zero_page);
err_window:
	vmcoh_window_stop(&vmcoh);
	vmcoh_window_destroy(&vmcoh);
err_counters:
	free_percpu(vmcoh.counters);
err_entries:
	vmcoh_entries_destroy(&vmcoh.entries);
	vmcoh_backing_destroy(&vmcoh.backing);
err_hooks:
	vmcoh_hooks_exit();
	return err;
}

static void __exit vmcoh_exit(void)
{
	misc_deregister(&vmcoh_misc);
	/*
	 * Every file and VMA is gone: open files pin the module.  The reclaim
	 * worker and the shrinker may still run (a kick from before): stop
	 * them while the mapping they unmap from is still there.
	 */
	vmcoh_window_stop(&vmcoh);
	vmcoh_mapping_exit();
	vmcoh_blockmap_destroy(&vmcoh);
	vmcoh_window_destroy(&vmcoh);
	vmcoh_entries_destroy(&vmcoh.entries);
	vmcoh_backing_destroy(&vmcoh.backing);
	put_page(vmcoh.zero_page);
	free_percpu(vmcoh.counters);
	vmcoh_hooks_exit();
}

module_init(vmcoh_init);
module_exit(vmcoh_exit);

MODULE_DESCRIPTION("vmcoh: page faults coherent with write(2), punch and truncate");
MODULE_LICENSE("GPL");
