/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Test hooks: hold points and unsafe protocol variants (see hooks.c).
 *
 * Both are compiled in and inert unless the module is loaded with
 * test_hooks=1: the fast paths then pay one static branch, a NOP patched
 * into a jump only when the hooks are enabled.
 */
#ifndef VMCOH_HOOKS_H
#define VMCOH_HOOKS_H

#include <linux/jump_label.h>

#include "vmcoh.h"

DECLARE_STATIC_KEY_FALSE(vmcoh_test_hooks);
extern unsigned int vmcoh_unsafe_variant;

/* True when the module runs the broken protocol @variant (VMCOH_UNSAFE_*). */
static __always_inline bool vmcoh_unsafe(unsigned int variant)
{
	return static_branch_unlikely(&vmcoh_test_hooks) &&
	       vmcoh_unsafe_variant == variant;
}

void __vmcoh_hold(struct vmcoh_dev *dev, unsigned int point, pgoff_t first,
		  pgoff_t last, u64 op_bit);

bool __vmcoh_hold_armed(unsigned int point, pgoff_t first, pgoff_t last);

/*
 * Is @point, a point of no ops, armed for an index in [@first, @last]?  For
 * a path that may not park (under RCU), to leave the index to one that may.
 */
static __always_inline bool vmcoh_hold_armed(unsigned int point,
					     pgoff_t first, pgoff_t last)
{
	return static_branch_unlikely(&vmcoh_test_hooks) &&
	       __vmcoh_hold_armed(point, first, last);
}

/* Park here if userspace armed @point, a point of no ops, for an index in range. */
static __always_inline void vmcoh_hold_range(struct vmcoh_dev *dev,
					     unsigned int point, pgoff_t first,
					     pgoff_t last)
{
	if (static_branch_unlikely(&vmcoh_test_hooks))
		__vmcoh_hold(dev, point, first, last, 0);
}

/* Park here if userspace armed fault @point for @index. */
static __always_inline void vmcoh_hold_fault(struct vmcoh_dev *dev,
					     unsigned int point, pgoff_t index)
{
	vmcoh_hold_range(dev, point, index, index);
}

/* Park here if userspace armed invalidation @point for an index in range. */
static __always_inline void vmcoh_hold_inval(struct vmcoh_dev *dev,
					     unsigned int point, pgoff_t first,
					     pgoff_t last, enum vmcoh_op op)
{
	if (static_branch_unlikely(&vmcoh_test_hooks))
		__vmcoh_hold(dev, point, first, last, BIT_ULL(op));
}

/* Park here if userspace armed DROP_STARTED for an index in range. */
static __always_inline void vmcoh_hold_drop(struct vmcoh_dev *dev,
					    pgoff_t first, pgoff_t last,
					    enum vmcoh_op op)
{
	if (static_branch_unlikely(&vmcoh_test_hooks))
		__vmcoh_hold(dev, VMCOH_HOLD_DROP_STARTED, first, last,
			     BIT_ULL(op));
}

extern unsigned int vmcoh_fail_range_alloc;

/*
 * Fault injection: should this allocation of a window range fail?  With
 * test_hooks=1 and fail_range_alloc=1 the quick one (__GFP_NORETRY) does,
 * as on a fragmented machine; with 2 every one does, as out of memory.
 */
static __always_inline bool vmcoh_fail_range(bool hard)
{
	return static_branch_unlikely(&vmcoh_test_hooks) &&
	       READ_ONCE(vmcoh_fail_range_alloc) > hard;
}

extern unsigned int vmcoh_zero_page_max_refs;

/*
 * The references the zero page may have before holes get SIGBUS instead:
 * VMCOH_ZERO_PAGE_MAX_REFS, or, with test_hooks=1, zero_page_max_refs if
 * that is lower (a test cannot map 2^30 holes).
 */
static __always_inline int vmcoh_zero_page_max(void)
{
	unsigned int max = VMCOH_ZERO_PAGE_MAX_REFS;

	if (static_branch_unlikely(&vmcoh_test_hooks))
		max = min(max, READ_ONCE(vmcoh_zero_page_max_refs));
	return max;
}

int vmcoh_hooks_init(bool enable, const char *unsafe);
void vmcoh_hooks_exit(void);
void vmcoh_hooks_flush_file(struct file *file, fl_owner_t id);
long vmcoh_ioctl_hold(struct file *file, unsigned int cmd, void __user *arg);

#endif /* VMCOH_HOOKS_H */
