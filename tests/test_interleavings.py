"""The seed races as exact interleavings (vmcoh-interleave), in one step of
the kernel's shared boot (conftest.STEPS): against the safe module and
against each unsafe variant, plus the hold-point GoogleTest cases.

Run on every kernel of the matrix (conftest.KERNELS): Debian's 6.1 and
6.12, whose fault paths differ (6.12 faults under the VMA lock first), and
the debug kernels, where a broken protocol must still not upset lockdep,
KASAN or KCSAN.  The safe module must give no violation
in any interleaving.  Each unsafe
variant must be caught by the interleaving that targets it on every
repetition: that proves the harness catches the bug 100%, not by luck.  Each
variant runs only the interleavings that target it (vmcoh-interleave
--targeted); VMCOH_INTERLEAVE_MATRIX=full runs every variant against every
interleaving.  The matrix (variant x interleaving: violations/repetitions,
"not run" off the targets) is printed, which pytest -s shows, and written to
build/test-results/interleavings-matrix.md (6.1) and
interleavings-matrix-KERNEL.md for the others.  A kernel splat in the step's
stretch of the kernel log fails the test: a broken protocol may corrupt
data, never the kernel.
"""

import json

import pytest

from conftest import BUILD, SUITE_KERNELS, explain, interleave_repeat, shared_boot
from test_module import gtest_counts

pytestmark = pytest.mark.vm

INTERLEAVE = BUILD / "userspace" / "vmcoh-interleave"
VARIANTS = ["lookup_before_lock", "unmap_before_remove", "no_size_recheck",
            "no_even_cows", "free_before_unmap", "write_no_invalidate",
            "zero_unmap_after_publish", "no_store_wait"]


def load_report(out, module, proc):
    path = out / f"{module}.json"
    assert path.exists() and path.stat().st_size, \
        f"{path.name} not written; {explain(proc)}"
    return json.loads(path.read_text())


def cell(result, targeted):
    text = f"{result['violations']}/{result['repetitions']}"
    if result["not_driven"]:
        text += f" ({result['not_driven']} not driven)"
    return f"**{text}**" if targeted else text


def matrix(reports, kernel):
    """Markdown: one row per module, one column per interleaving."""
    columns = [r["name"] for r in reports["safe"]["results"]]
    catches = {r["name"]: r["catches"] for r in reports["safe"]["results"]}
    lines = [
        f"# vmcoh-interleave on Linux {kernel}: violations / repetitions",
        "",
        "Rows: the module loaded (`test_hooks=1`, and `unsafe=NAME`). Columns: the",
        "interleaving, with the variant it targets; in bold, the cell where the",
        "targeted variant is loaded, which must be a violation on every repetition.",
        "",
        "| module | " + " | ".join(f"`{c}` (catches {catches[c]})" for c in columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    for module, doc in reports.items():
        by_name = {r["name"]: r for r in doc["results"]}
        row = [cell(by_name[c], catches[c] == module) if c in by_name else "not run"
               for c in columns]
        label = "safe" if module == "safe" else f"unsafe={module}"
        lines.append(f"| {label} | " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


# tests/guest/interleavings.sh is a step of the kernel's shared boot (conftest.STEPS), with
# conftest.interleave_repeat() repetitions per cell.
@pytest.mark.parametrize("kernel", SUITE_KERNELS)
def test_interleavings_catch_every_unsafe_variant(built, results_dir, kernel):
    assert INTERLEAVE.exists(), f"{INTERLEAVE} missing: make"
    boot = shared_boot(kernel)
    proc = boot.proc
    out = results_dir / f"interleavings-{kernel}"
    repeat = interleave_repeat(kernel)

    reports = {m: load_report(out, m, proc) for m in ["safe"] + VARIANTS}
    table = matrix(reports, kernel)
    print("\n" + table)
    suffix = "" if kernel == "6.1" else f"-{kernel}"
    (results_dir / f"interleavings-matrix{suffix}.md").write_text(table)

    safe = reports["safe"]
    assert safe["module_unsafe"] == "none" and safe["test_hooks"]
    for result in safe["results"]:
        assert result["repetitions"] == repeat, result["name"]
        assert result["violations"] == 0 and result["not_driven"] == 0, \
            json.dumps(result["violation_records"][:3] + result["errors"][:3], indent=1)
    assert (out / "safe.rc").read_text().strip() == "0"

    for variant in VARIANTS:
        doc = reports[variant]
        assert doc["module_unsafe"] == variant, "the variant was not loaded"
        targeted = [r for r in doc["results"] if r["catches"] == variant]
        assert targeted, f"no interleaving targets {variant}"
        for result in targeted:
            assert result["repetitions"] == repeat
            assert result["violations"] == repeat, \
                f"{result['name']} caught unsafe={variant} in only " \
                f"{result['violations']}/{repeat}: {result['errors'][:3]}"
        assert (out / f"{variant}.rc").read_text().strip() == "1"

    for name in ("gtest-hooks.json", "gtest-no-hooks.json"):
        report = out / name
        assert report.exists(), f"{name} not written; {explain(proc)}"
        total, failed, skipped = gtest_counts(report)
        print(f"{name}: {total} tests, {len(failed)} failed, {skipped} skipped")
        assert not failed, f"failed: {failed}"
        assert total > 0 and skipped == 0

    boot.check("interleavings")
