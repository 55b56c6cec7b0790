"""The module's layers call down, never up (kmod/vmcoh.h, "Layers").

The symbols each object file of the 6.1 build leaves undefined are resolved
against the symbols the others define: what the entries and the block map
need from above them they are handed as ops tables (struct
vmcoh_entry_load_ops, struct vmcoh_block_ops), so they call no function of
any other file of the module but the test hooks and the trace events
(kmod/trace.c), which call nothing.  Runs on the host.
"""

import subprocess

from conftest import ROOT

# Each file, and the files of the module it may call.
LOWER = {
    "hooks": set(),
    "trace": set(),
    "blockmap": {"trace"},
    "entry": {"hooks", "trace"},
}


def symbols(obj):
    """(defined, undefined) symbols of an object file."""
    out = subprocess.run(["nm", str(obj)], capture_output=True, text=True, check=True).stdout
    defined, undefined = set(), set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] in "TDRB":
            defined.add(parts[2])
        elif len(parts) == 2 and parts[0] == "U":
            undefined.add(parts[1])
    return defined, undefined


def test_lower_layers_call_nothing_above_them(built):
    objs = sorted((ROOT / "kmod").glob("*.o"))
    assert len(objs) > 5, "build the module first (make module)"
    tables = {o.stem: symbols(o) for o in objs if o.stem != "vmcoh"}
    owner = {sym: name for name, (defined, _) in tables.items() for sym in defined}
    for name, allowed in LOWER.items():
        calls = {}
        for sym in tables[name][1]:
            if sym in owner and owner[sym] != name:
                calls.setdefault(owner[sym], []).append(sym)
        up = {f: sorted(s) for f, s in calls.items() if f not in allowed}
        assert not up, f"kmod/{name}.c calls up into {up}"
