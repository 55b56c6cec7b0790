"""The module's behaviour, tested inside a VM: GoogleTest suite, reload."""

import json
import subprocess

import pytest

from conftest import GTEST, SUITE_KERNELS, explain, shared_boot, vmrun

pytestmark = pytest.mark.vm


def gtest_counts(report):
    data = json.loads(report.read_text())
    failed = [f"{s['name']}.{t['name']}"
              for s in data["testsuites"] for t in s["testsuite"]
              if t.get("failures")]
    skipped = sum(1 for s in data["testsuites"] for t in s["testsuite"]
                  if t.get("result") == "SKIPPED")
    return data["tests"], failed, skipped


# Debian's two stock kernels differ where it matters here: 6.12 refuses the
# shared zero page in shared writable VMAs, 6.1 would map it writable.  The
# debug kernels add lockdep, KASAN, kmemleak and KCSAN to every case.
# tests/guest/gtest.sh is a step of the kernel's shared boot (conftest.STEPS).
@pytest.mark.parametrize("kernel", SUITE_KERNELS)
def test_gtest_suite(built, results_dir, kernel):
    """Every GoogleTest case passes against a freshly loaded module."""
    boot = shared_boot(kernel)
    out = results_dir / f"gtest-{kernel}"
    for name in ("gtest.json", "gtest-cap.json"):
        report = out / name
        assert report.exists(), f"{name} not written; {explain(boot.proc)}"
        total, failed, skipped = gtest_counts(report)
        print(f"{kernel} {name}: {total} tests, {len(failed)} failed, {skipped} skipped")
        assert not failed, f"failed: {failed}"
        assert total > 0 and skipped == 0
    boot.check("gtest")


def test_unload_frees_everything_and_reload_starts_empty(built):
    proc = vmrun(["/usr/bin/python3", "tests/guest/reload.py"], log="reload",
                 timeout=300)
    assert proc.returncode == 0, explain(proc)
    assert "reload: OK" in proc.stdout


def test_pinned_io_cases_on_the_host(built):
    """The pinned-I/O cases the guest cannot run (tests/guest/gtest.sh): they need $TMPDIR on a
    block-device file system, as the host's /tmp is here (userfaultfd needs root)."""
    proc = subprocess.run([str(GTEST), "--gtest_filter=PinnedIoTest.*"], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "[  PASSED  ] 8 tests." in proc.stdout and "SKIPPED" not in proc.stdout, \
        proc.stdout[-3000:]
