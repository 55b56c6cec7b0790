/* SPDX-License-Identifier: GPL-2.0 */
/*
 * vmcoh's trace events, in the style of include/trace/events/fs_dax.h: the
 * fault path (a fault and its end: what the fault found at the index, what
 * it answered, a PTE or a PMD, how many pages fault-around mapped),
 * ->map_pages, ->page_mkwrite, entry-lock waits, invalidations, DROPs,
 * the window's reclaims, and the life of a server request (submitted,
 * received, done).  See docs/tracing.md.
 *
 * kmod/trace.c defines them (CREATE_TRACE_POINTS); a disabled event costs
 * a static branch that is not taken.
 */
#ifndef _VMCOH_TRACE_ONCE_H
#define _VMCOH_TRACE_ONCE_H

#include <linux/mm_types.h>

/*
 * The answers of vmcoh's faults, as plain integers: vm_fault_t is a
 * restricted type, which a trace entry and TRACE_DEFINE_ENUM() would
 * degrade (sparse says so).
 */
enum vmcoh_trace_fault_result {
	VMCOH_TRACE_OOM		= (__force int)VM_FAULT_OOM,
	VMCOH_TRACE_SIGBUS	= (__force int)VM_FAULT_SIGBUS,
	VMCOH_TRACE_NOPAGE	= (__force int)VM_FAULT_NOPAGE,
	VMCOH_TRACE_LOCKED	= (__force int)VM_FAULT_LOCKED,
	VMCOH_TRACE_RETRY	= (__force int)VM_FAULT_RETRY,
	VMCOH_TRACE_FALLBACK	= (__force int)VM_FAULT_FALLBACK,
};

#endif /* _VMCOH_TRACE_ONCE_H */

#undef TRACE_SYSTEM
#define TRACE_SYSTEM vmcoh

#if !defined(_VMCOH_TRACE_H) || defined(TRACE_HEADER_MULTI_READ)
#define _VMCOH_TRACE_H

#include <linux/mm.h>
#include <linux/tracepoint.h>

#include "vmcoh.h"

#define VMCOH_FAULT_FOUND						\
	EM(VMCOH_FOUND_BLOCK,	"block")				\
	EM(VMCOH_FOUND_HOLE,	"hole")					\
	EM(VMCOH_FOUND_LOADING,	"loading")				\
	EM(VMCOH_FOUND_LOAD,	"load")					\
	EM(VMCOH_FOUND_DROP,	"drop")					\
	EM(VMCOH_FOUND_WINDOW,	"window")				\
	EM(VMCOH_FOUND_FALLBACK, "fallback")				\
	EMe(VMCOH_FOUND_EOF,	"eof")

#define VMCOH_OPS							\
	EM(VMCOH_OP_WRITE,	"write")				\
	EM(VMCOH_OP_PUNCH,	"punch")				\
	EM(VMCOH_OP_SHRINK,	"shrink")				\
	EM(VMCOH_OP_SERVER,	"server")				\
	EM(VMCOH_OP_DROP,	"drop")					\
	EMe(VMCOH_OP_RECLAIM,	"reclaim")

#define VMCOH_REQ_OPS							\
	EM(VMCOH_REQ_LOAD,	"load")					\
	EMe(VMCOH_REQ_STORE,	"store")

/* What vmcoh's faults answer (VM_FAULT_RESULT_TRACE, for ours alone). */
#define VMCOH_FAULT_RESULTS						\
	EM(VMCOH_TRACE_OOM,	"OOM")					\
	EM(VMCOH_TRACE_SIGBUS,	"SIGBUS")				\
	EM(VMCOH_TRACE_NOPAGE,	"NOPAGE")				\
	EM(VMCOH_TRACE_LOCKED,	"LOCKED")				\
	EM(VMCOH_TRACE_RETRY,	"RETRY")				\
	EMe(VMCOH_TRACE_FALLBACK, "FALLBACK")

#define VMCOH_RECLAIM_WHY						\
	EM(VMCOH_RECLAIM_INLINE,	"inline")			\
	EM(VMCOH_RECLAIM_BACKGROUND,	"background")			\
	EM(VMCOH_RECLAIM_SHRINKER,	"shrinker")			\
	EMe(VMCOH_RECLAIM_FAULT,	"fault")

#undef EM
#undef EMe
#define EM(a, b)	TRACE_DEFINE_ENUM(a);
#define EMe(a, b)	TRACE_DEFINE_ENUM(a);

VMCOH_FAULT_FOUND
VMCOH_FAULT_RESULTS
VMCOH_OPS
VMCOH_REQ_OPS
VMCOH_RECLAIM_WHY

#undef EM
#undef EMe
#define EM(a, b)	{ a, b },
#define EMe(a, b)	{ a, b }

DECLARE_EVENT_CLASS(vmcoh_fault_class,
	TP_PROTO(struct vm_fault *vmf, bool pmd),
	TP_ARGS(vmf, pmd),
	TP_STRUCT__entry(
		__field(pgoff_t, index)
		__field(unsigned long, address)
		__field(bool, write)
		__field(bool, pmd)
	),
	TP_fast_assign(
		__entry->index = vmf->pgoff;
		__entry->address = vmf->address;
		__entry->write = vmf->flags & FAULT_FLAG_WRITE;
		__entry->pmd = pmd;
	),
	TP_printk("index=%lu address=%#lx %s %s",
		  __entry->index, __entry->address,
		  __entry->write ? "write" : "read",
		  __entry->pmd ? "pmd" : "pte")
);

/* A fault begins: ->fault (pte) or ->huge_fault (pmd). */
DEFINE_EVENT(vmcoh_fault_class, vmcoh_fault,
	TP_PROTO(struct vm_fault *vmf, bool pmd),
	TP_ARGS(vmf, pmd));

/*
 * A fault ends: what it found at the index the last time it looked, what
 * it answered the core, and the pages fault-around mapped besides (@around:
 * their bits, counted here so that a disabled event costs no count).
 */
TRACE_EVENT(vmcoh_fault_done,
	TP_PROTO(struct vm_fault *vmf, bool pmd, enum vmcoh_fault_found found,
		 vm_fault_t result, unsigned long around),
	TP_ARGS(vmf, pmd, found, result, around),
	TP_STRUCT__entry(
		__field(pgoff_t, index)
		__field(bool, write)
		__field(bool, pmd)
		__field(unsigned int, found)
		__field(unsigned int, result)
		__field(unsigned int, around)
	),
	TP_fast_assign(
		__entry->index = vmf->pgoff;
		__entry->write = vmf->flags & FAULT_FLAG_WRITE;
		__entry->pmd = pmd;
		__entry->found = found;
		__entry->result = (__force unsigned int)result;
		__entry->around = hweight_long(around);
	),
	TP_printk("index=%lu %s %s found=%s result=%s around=%u",
		  __entry->index, __entry->write ? "write" : "read",
		  __entry->pmd ? "pmd" : "pte",
		  __print_symbolic(__entry->found, VMCOH_FAULT_FOUND),
		  __entry->result ?
			__print_flags(__entry->result, "|",
				      VMCOH_FAULT_RESULTS) : "0",
		  __entry->around)
);

/* ->map_pages: the window [start, end] and the pages it mapped (bits). */
TRACE_EVENT(vmcoh_map_pages,
	TP_PROTO(struct vm_fault *vmf, pgoff_t start, pgoff_t end,
		 unsigned long mapped, vm_fault_t result),
	TP_ARGS(vmf, start, end, mapped, result),
	TP_STRUCT__entry(
		__field(pgoff_t, index)
		__field(pgoff_t, start)
		__field(pgoff_t, end)
		__field(unsigned int, mapped)
		__field(unsigned int, result)
	),
	TP_fast_assign(
		__entry->index = vmf->pgoff;
		__entry->start = start;
		__entry->end = end;
		__entry->mapped = hweight_long(mapped);
		__entry->result = (__force unsigned int)result;
	),
	TP_printk("index=%lu start=%lu end=%lu mapped=%u result=%s",
		  __entry->index, __entry->start, __entry->end,
		  __entry->mapped,
		  __entry->result ?
			__print_flags(__entry->result, "|",
				      VMCOH_FAULT_RESULTS) : "0")
);

/* ->page_mkwrite ends: on the zero page or a block, and its answer. */
TRACE_EVENT(vmcoh_page_mkwrite,
	TP_PROTO(struct vm_fault *vmf, bool zero_page, vm_fault_t result),
	TP_ARGS(vmf, zero_page, result),
	TP_STRUCT__entry(
		__field(pgoff_t, index)
		__field(bool, zero_page)
		__field(unsigned int, result)
	),
	TP_fast_assign(
		__entry->index = vmf->pgoff;
		__entry->zero_page = zero_page;
		__entry->result = (__force unsigned int)result;
	),
	TP_printk("index=%lu page=%s result=%s", __entry->index,
		  __entry->zero_page ? "zero" : "block",
		  __entry->result ?
			__print_flags(__entry->result, "|",
				      VMCOH_FAULT_RESULTS) : "0")
);

/* A task slept on a locked entry (2 MiB: a region's) for @ns. */
TRACE_EVENT(vmcoh_entry_wait,
	TP_PROTO(pgoff_t index, bool exclusive, u64 ns),
	TP_ARGS(index, exclusive, ns),
	TP_STRUCT__entry(
		__field(pgoff_t, index)
		__field(bool, exclusive)
		__field(u64, ns)
	),
	TP_fast_assign(
		__entry->index = index;
		__entry->exclusive = exclusive;
		__entry->ns = ns;
	),
	TP_printk("index=%lu %s ns=%llu", __entry->index,
		  __entry->exclusive ? "exclusive" : "shared", __entry->ns)
);

/*
 * An invalidation of [first, last] (invalidate.c; last -1: to the end)
 * ends: the entries it removed, its ranged unmaps (0 to 2), the blocks it
 * freed.
 */
TRACE_EVENT(vmcoh_invalidate,
	TP_PROTO(pgoff_t first, pgoff_t last, enum vmcoh_op op,
		 unsigned long removed, unsigned int unmaps,
		 unsigned long freed),
	TP_ARGS(first, last, op, removed, unmaps, freed),
	TP_STRUCT__entry(
		__field(pgoff_t, first)
		__field(pgoff_t, last)
		__field(unsigned int, op)
		__field(unsigned long, removed)
		__field(unsigned int, unmaps)
		__field(unsigned long, freed)
	),
	TP_fast_assign(
		__entry->first = first;
		__entry->last = last;
		__entry->op = op;
		__entry->removed = removed;
		__entry->unmaps = unmaps;
		__entry->freed = freed;
	),
	TP_printk("first=%lu last=%ld op=%s removed=%lu unmaps=%u freed=%lu",
		  __entry->first, (long)__entry->last,
		  __print_symbolic(__entry->op, VMCOH_OPS),
		  __entry->removed, __entry->unmaps, __entry->freed)
);

/* A DROP of [first, last] (the server's, or a reclaim's) ends. */
TRACE_EVENT(vmcoh_drop,
	TP_PROTO(pgoff_t first, pgoff_t last, enum vmcoh_op op, int err),
	TP_ARGS(first, last, op, err),
	TP_STRUCT__entry(
		__field(pgoff_t, first)
		__field(pgoff_t, last)
		__field(unsigned int, op)
		__field(int, err)
	),
	TP_fast_assign(
		__entry->first = first;
		__entry->last = last;
		__entry->op = op;
		__entry->err = err;
	),
	TP_printk("first=%lu last=%ld op=%s err=%d", __entry->first,
		  (long)__entry->last, __print_symbolic(__entry->op, VMCOH_OPS),
		  __entry->err)
);

/* The window reclaimed the range of @region (or could not: @err). */
TRACE_EVENT(vmcoh_reclaim,
	TP_PROTO(pgoff_t region, unsigned int blocks,
		 enum vmcoh_reclaim_why why, int err),
	TP_ARGS(region, blocks, why, err),
	TP_STRUCT__entry(
		__field(pgoff_t, first)
		__field(unsigned int, blocks)
		__field(unsigned int, why)
		__field(int, err)
	),
	TP_fast_assign(
		__entry->first = region << VMCOH_RANGE_ORDER;
		__entry->blocks = blocks;
		__entry->why = why;
		__entry->err = err;
	),
	TP_printk("first=%lu blocks=%u why=%s err=%d", __entry->first,
		  __entry->blocks,
		  __print_symbolic(__entry->why, VMCOH_RECLAIM_WHY),
		  __entry->err)
);

DECLARE_EVENT_CLASS(vmcoh_req_class,
	TP_PROTO(struct vmcoh_req *req),
	TP_ARGS(req),
	TP_STRUCT__entry(
		__field(u32, id)
		__field(u32, op)
		__field(pgoff_t, index)
		__field(unsigned int, nr)
		__field(int, status)
		__field(unsigned int, failed)
	),
	TP_fast_assign(
		__entry->id = req->id;
		__entry->op = req->op;
		__entry->index = req->index;
		__entry->nr = req->nr;
		__entry->status = req->status;
		__entry->failed = req->op == VMCOH_REQ_LOAD ?
				  bitmap_weight(req->failed, req->nr) : 0;
	),
	TP_printk("id=%u op=%s index=%lu nr=%u status=%d failed=%u",
		  __entry->id, __print_symbolic(__entry->op, VMCOH_REQ_OPS),
		  __entry->index, __entry->nr, __entry->status,
		  __entry->failed)
);

/* A LOAD or a STORE is queued for the server. */
DEFINE_EVENT(vmcoh_req_class, vmcoh_req_submit,
	TP_PROTO(struct vmcoh_req *req),
	TP_ARGS(req));

/* The server received it (RECV or SERVE). */
DEFINE_EVENT(vmcoh_req_class, vmcoh_req_recv,
	TP_PROTO(struct vmcoh_req *req),
	TP_ARGS(req));

/*
 * It ended: answered, failed, cancelled or timed out; a LOAD's blocks are
 * in (but those an invalidation took meanwhile), @failed of them failed.
 */
DEFINE_EVENT(vmcoh_req_class, vmcoh_req_done,
	TP_PROTO(struct vmcoh_req *req),
	TP_ARGS(req));

#endif /* _VMCOH_TRACE_H */

#undef TRACE_INCLUDE_PATH
#define TRACE_INCLUDE_PATH .
#undef TRACE_INCLUDE_FILE
#define TRACE_INCLUDE_FILE trace
#include <trace/define_trace.h>
