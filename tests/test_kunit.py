"""The module's KUnit suites (kmod/kunit/), on the debug kernels.

Loading the module runs them (KUnit's module notifier); tests/guest/kunit.sh
saves each suite's KTAP results from debugfs before unloading, and the
kernel's own KTAP parser (tools/testing/kunit/kunit_parser.py, from the
source tree the kernel was built from) counts them here.  Every suite must
be there, every case must pass, and the boot must be free of splats: a
failed case may WARN in the fixture's teardown.
"""

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import KERNELS, ROOT, explain, is_debug_kernel, module_for, vmrun

pytestmark = pytest.mark.vm

SUITES = ("vmcoh_entry", "vmcoh_blockmap", "vmcoh_invalidate", "vmcoh_backing", "vmcoh_window")
DEBUG_KERNELS = [k for k in KERNELS if is_debug_kernel(k)]


def kunit_parser(kernel):
    """The kunit_parser module of the source tree that built kernel."""
    source = subprocess.run([str(ROOT / "tools" / "build-kernel"), "--source", "--no-build",
                             kernel], capture_output=True, text=True)
    assert source.returncode == 0, source.stderr
    path = str(Path(source.stdout.strip()) / "tools" / "testing" / "kunit")
    if path not in sys.path:
        sys.path.insert(0, path)
    return importlib.import_module("kunit_parser")


@pytest.mark.skipif(not DEBUG_KERNELS, reason="no debug kernel selected (VMCOH_KERNELS)")
@pytest.mark.parametrize("kernel", DEBUG_KERNELS)
def test_kunit_suites_pass(built, results_dir, kernel):
    module = module_for(kernel)
    assert module.exists(), f"{module} missing: make module-{kernel}"
    out = results_dir / f"kunit-{kernel}"
    out.mkdir(exist_ok=True)
    for old in out.glob("*.ktap"):
        old.unlink()
    proc = vmrun(["tests/guest/kunit.sh", out, module], log=f"kunit-{kernel}",
                 kernel=kernel, timeout=300, kunit=True)
    assert proc.returncode == 0, explain(proc)

    parser = kunit_parser(kernel)
    total = 0
    for suite in SUITES:
        ktap = out / f"{suite}.ktap"
        assert ktap.exists(), f"suite {suite} did not run"
        result = parser.parse_run_tests(ktap.read_text().splitlines())
        counts = result.counts
        print(f"{kernel} {suite}: {counts}")
        # The parser counts a plan ("1..N") that the cases do not match as an error.
        assert counts.errors == 0, f"{ktap}: KTAP parse errors"
        assert counts.failed == 0 and counts.crashed == 0, ktap.read_text()
        assert counts.skipped == 0 and counts.passed > 0
        total += counts.passed
    print(f"{kernel}: {total} KUnit cases passed")
