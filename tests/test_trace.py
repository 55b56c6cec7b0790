"""vmcoh's trace events (kmod/trace.h), read back through tracefs.

tests/guest/trace.py, a step of each kernel's shared boot (conftest.STEPS),
runs four scenarios, each with
every vmcoh event enabled, and saves each trace; here every trace is parsed
and the events each scenario must produce are looked for, with their
fields: what a fault found and answered, what fault-around and ->map_pages
mapped, ->page_mkwrite on the zero page and on a block, the entries,
unmaps and frees of each invalidation, an entry-lock wait, a served
object's requests from submission to their end, the window's reclaims and
their DROPs, a PMD fault.  On the stock kernels the documented tools run
too: tools/fault-latency.bt under bpftrace, and trace-cmd.
"""

import re
from collections import defaultdict

import pytest

from conftest import SUITE_KERNELS, is_debug_kernel, shared_boot

pytestmark = pytest.mark.vm

LINE = re.compile(r"^\s*(?P<task>.+?)-(?P<pid>\d+)\s+\[\d+\]\s+\S*\s*(?P<ts>\d+\.\d+): "
                  r"(?P<event>\w+): (?P<rest>.*)$")
WORDS = {"read", "write", "pte", "pmd", "shared", "exclusive"}


def parse(text):
    """The events of a trace: dicts with event, pid, fields, and flags (bare words)."""
    events = []
    for line in text.splitlines():
        m = LINE.match(line)
        if not m:
            continue
        rest = m.group("rest")
        if m.group("event") == "tracing_mark_write":
            events.append({"event": "mark", "pid": m.group("pid"), "text": rest.strip()})
            continue
        fields = dict(re.findall(r"(\w+)=(\S+)", rest))
        flags = {w for w in rest.split() if w in WORDS}
        events.append({"event": m.group("event"), "pid": m.group("pid"), "flags": flags, **fields})
    return events


def sections(events):
    """The events between each marker "vmcoh-test: NAME" and the next, by NAME."""
    out, name = defaultdict(list), None
    for e in events:
        if e["event"] == "mark":
            name = e["text"].removeprefix("vmcoh-test: ")
        elif name:
            out[name].append(e)
    return out


def one(events, event, **want):
    """The events named event whose fields include want; at least one must be there."""
    found = [e for e in events if e["event"] == event
             and all(str(e.get(k)) == str(v) for k, v in want.items())]
    assert found, f"no {event} with {want} in {events}"
    return found


def check_faults_end(events):
    """Every vmcoh_fault is followed by its task's vmcoh_fault_done, same index."""
    open_faults = {}
    for e in events:
        if e["event"] == "vmcoh_fault":
            assert e["pid"] not in open_faults, f"two faults begun without an end: {e}"
            open_faults[e["pid"]] = e
        elif e["event"] == "vmcoh_fault_done":
            begun = open_faults.pop(e["pid"], None)
            assert begun and begun["index"] == e["index"], f"an end without its fault: {e}"
            assert (("pmd" in begun["flags"]) == ("pmd" in e["flags"])), e
    assert not open_faults, f"faults that never ended: {open_faults}"


def check_plain(events):
    check_faults_end(events)
    s = sections(events)
    # ->map_pages maps blocks alone once the faulting PMD has a page table; a fresh mapping's
    # PMD may have none yet (that depends on what else the process has mapped near it), and
    # then ->fault maps the block and fault-around the other three.
    blocks = s["read blocks"]
    by_map_pages = [e for e in blocks if e["event"] == "vmcoh_map_pages" and e["index"] == "0"
                    and e["result"] == "NOPAGE" and int(e["mapped"]) >= 1]
    by_fault = [e for e in blocks if e["event"] == "vmcoh_fault_done" and e["index"] == "0"
                and e["found"] == "block" and e["result"] == "NOPAGE" and int(e["around"]) >= 1]
    assert by_map_pages or by_fault, f"the read of blocks: {blocks}"
    assert not (by_map_pages and by_fault), f"mapped twice: {blocks}"

    hole = one(s["read hole"], "vmcoh_fault_done", index=8, found="hole", result="NOPAGE")
    assert "read" in hole[0]["flags"] and "pte" in hole[0]["flags"]

    zero = s["store on the zero page"]
    one(zero, "vmcoh_page_mkwrite", index=8, page="zero", result="NOPAGE")
    one(zero, "vmcoh_page_mkwrite", index=8, page="block", result="LOCKED")

    store = one(s["store into a hole"], "vmcoh_fault_done", index=12, found="hole",
                result="LOCKED")
    assert "write" in store[0]["flags"]
    one(s["store into a hole"], "vmcoh_page_mkwrite", index=12, page="block", result="LOCKED")

    # The blocks were mapped under their page locks: no entries, one unmap (step 3b).
    punch = one(s["punch"], "vmcoh_invalidate", first=0, last=3, op="punch", freed=4)
    assert int(punch[0]["unmaps"]) >= 1
    # Pages 8 and 12 were mapped through entries: both go, with one unmap.
    one(s["shrink"], "vmcoh_invalidate", first=8, op="shrink", removed=2, unmaps=1, freed=2)
    one(s["beyond EOF"], "vmcoh_fault_done", index=20, found="eof", result="SIGBUS")


def check_wait(events):
    check_faults_end(events)
    waits = one(events, "vmcoh_entry_wait", index=5)
    assert all(int(w["ns"]) > 0 for w in waits), waits
    # write(2)'s invalidation waited for the fault's entry, then removed it and unmapped.
    one(events, "vmcoh_invalidate", first=5, last=5, op="write", removed=1, unmaps=1)


def check_served(events):
    check_faults_end(events)
    life = defaultdict(list)
    for e in events:
        if e["event"].startswith("vmcoh_req_"):
            life[e["id"]].append(e)
    assert life, "no server request"
    for rid, steps in life.items():
        names = [e["event"] for e in steps]
        assert names == ["vmcoh_req_submit", "vmcoh_req_recv", "vmcoh_req_done"], (rid, steps)
        assert steps[0]["op"] == "load" and steps[-1]["status"] == "0", steps
        assert int(steps[0]["nr"]) >= 1
    one(events, "vmcoh_fault_done", found="load")
    reclaims = one(events, "vmcoh_reclaim", err=0)
    assert any(int(r["blocks"]) > 0 for r in reclaims), reclaims
    one(events, "vmcoh_drop", op="reclaim", err=0)
    inval = one(events, "vmcoh_invalidate", op="reclaim")
    assert any(int(i["freed"]) > 0 and int(i["unmaps"]) == 1 for i in inval), inval


def check_pmd(events):
    check_faults_end(events)
    done = one(events, "vmcoh_fault_done", index=0, found="block", result="NOPAGE", around=0)
    assert any("pmd" in e["flags"] for e in done), f"no PMD mapped: {events}"


# tests/guest/trace.py is a step of the kernel's shared boot (conftest.STEPS).
@pytest.mark.parametrize("kernel", SUITE_KERNELS)
def test_trace_events_appear_with_their_fields(built, results_dir, kernel):
    shared_boot(kernel).check("trace")
    out = results_dir / f"trace-{kernel}"

    check_plain(parse((out / "plain.txt").read_text()))
    check_wait(parse((out / "wait.txt").read_text()))
    check_served(parse((out / "served.txt").read_text()))
    check_pmd(parse((out / "pmd.txt").read_text()))

    if is_debug_kernel(kernel):
        return  # no BPF there; trace-cmd is checked on the stock kernels
    bpf = (out / "bpftrace.txt").read_text()
    assert "bpftrace exit 0" in bpf, bpf
    # The histogram of stores into holes: @usecs[0 (pte), 1 (hole)].
    hist = re.search(r"@usecs\[0, 1\]:\s*\n((?:\[.*\n)+)", bpf)
    assert hist, bpf
    assert sum(int(n) for n in re.findall(r"\)\s+(\d+)\s+\|", hist.group(1))) >= 256, bpf
    tc = (out / "trace-cmd.txt").read_text()
    assert "record exit 0, report exit 0" in tc, tc
    assert len(re.findall(r"vmcoh_fault_done:.*found=hole result=LOCKED", tc)) >= 256, tc
