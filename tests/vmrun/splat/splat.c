// SPDX-License-Identifier: GPL-2.0
/*
 * vmrun_splat: the self-test module of tools/vmrun.  Loading it with warn=1
 * (the default) emits a kernel WARNING, which vmrun must report as a splat;
 * warn=0 loads cleanly, which vmrun must not (out-of-tree taint and unsigned
 * module messages are not splats).
 */
#include <linux/bug.h>
#include <linux/init.h>
#include <linux/module.h>

static bool warn = true;
module_param(warn, bool, 0444);
MODULE_PARM_DESC(warn, "WARN_ON() in module init (default true)");

static int __init vmrun_splat_init(void)
{
	WARN_ON(warn);
	return 0;
}

static void __exit vmrun_splat_exit(void)
{
}

module_init(vmrun_splat_init);
module_exit(vmrun_splat_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("tools/vmrun self-test: a WARNING on load");
