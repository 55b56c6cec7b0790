"""The kselftest collection "vmcoh" (tools/kselftest/, docs/kselftest.md).

`make kselftest-install DESTDIR=build/kselftest` lays it out, with the
module for 6.1 and for 6.12; in a 6.1 guest the kernel's own
run_kselftest.sh (from linux-source-6.1, as installed) runs it three times
(tests/guest/kselftest.sh): every step, which must pass; as an unprivileged
user, which must skip; and its interleavings against an unsafe module,
which must fail.  The kernel's KTAP parser
(tools/testing/kunit/kunit_parser.py, from the same tarball) reads the
runner's TAP and, with the runner's "# " prefix taken off, run_vmcoh.sh's
own KTAP with its nested steps.
"""

import importlib
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from conftest import BUILD, KERNELS, ROOT, explain, vmrun

# One install tree for both tests: under xdist, one worker.
pytestmark = [pytest.mark.vm, pytest.mark.xdist_group("kselftest")]

DEST = BUILD / "kselftest"
HEADER = "# selftests: vmcoh: run_vmcoh.sh"
STEPS = ["load", "gtest", "race", "interleavings", "unload", "kernel log clean"]


def kunit_parser():
    """The KTAP parser of linux-source-6.1 (tools/testing/kunit), unpacked under build/."""
    where = BUILD / "kunit-tool"
    if not (where / "kunit_parser.py").exists():
        tarball = sorted(Path("/usr/src").glob("linux-source-6.1.tar.*"))[0]
        where.mkdir(parents=True, exist_ok=True)
        with tarfile.open(tarball) as tar:
            for member in tar.getmembers():
                parts = member.name.split("/")
                if parts[1:4] == ["tools", "testing", "kunit"] and len(parts) == 5 \
                        and member.isfile():
                    member.name = parts[-1]
                    tar.extract(member, where)
    if str(where) not in sys.path:
        sys.path.insert(0, str(where))
    return importlib.import_module("kunit_parser")


def runner_output(path):
    """(the runner's own TAP, run_vmcoh.sh's KTAP with the runner's prefix off, rc)."""
    lines = path.read_text().splitlines()
    rc = int(lines.pop().removeprefix("rc="))
    top = [line for line in lines if not line.startswith("# ") or line == HEADER]
    start = lines.index(HEADER) + 1
    inner = []
    for line in lines[start:]:
        if not line.startswith("#"):
            break
        inner.append(line[2:] if line.startswith("# ") else line[1:])
    return top, inner, rc


@pytest.fixture(scope="module")
def installed(built):
    proc = subprocess.run(["make", "-s", "kselftest-install", f"DESTDIR={DEST}",
                           "KSELFTEST_KERNELS=6.1 6.12"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return DEST


def test_install_lays_out_a_collection(installed):
    for path in ("run_kselftest.sh", "kselftest/runner.sh", "kselftest/prefix.pl",
                 "vmcoh/run_vmcoh.sh", "vmcoh/settings", "vmcoh/vmcoh-gtest", "vmcoh/vmcoh-race",
                 "vmcoh/vmcoh-interleave"):
        assert (installed / path).exists(), path
    releases = sorted(p.name for p in (installed / "vmcoh/modules").iterdir())
    assert [r.split(".")[:2] for r in releases] == [["6", "1"], ["6", "12"]], releases
    assert (installed / "kselftest-list.txt").read_text().splitlines().count(
        "vmcoh:run_vmcoh.sh") == 1
    assert "timeout=" in (installed / "vmcoh/settings").read_text()


@pytest.mark.skipif("6.1" not in KERNELS, reason="runs in a 6.1 guest")
def test_the_kernels_runner_runs_it_and_its_parser_reads_it(installed, results_dir):
    out = results_dir / "kselftest"
    out.mkdir(exist_ok=True)
    for old in out.glob("*.tap"):
        old.unlink()
    proc = vmrun(["tests/guest/kselftest.sh", installed, out], log="kselftest", kernel="6.1",
                 timeout=900)
    assert proc.returncode == 0, explain(proc)
    parser = kunit_parser()

    # Every step passes, the gtest cases, race scenarios and interleavings nested in them.
    top, inner, _ = runner_output(out / "run.tap")
    assert "ok 1 selftests: vmcoh: run_vmcoh.sh" in top, top
    result = parser.parse_run_tests(top)
    assert result.counts.passed == 1 and result.counts.errors == 0, result.counts
    ours = parser.parse_run_tests(inner)
    assert ours.counts.errors == 0, "\n".join(inner)
    names = [t.name for t in ours.subtests]
    assert [n.split(" ")[0] if n.startswith("load") else n for n in names] == STEPS, names
    assert all(t.status == parser.TestStatus.SUCCESS for t in ours.subtests), names
    nested = {t.name: t for t in ours.subtests}
    assert len(nested["gtest"].subtests) >= 200, len(nested["gtest"].subtests)
    assert nested["gtest"].counts.failed == 0
    assert len(nested["race"].subtests) == 16
    assert len(nested["interleavings"].subtests) == 9
    print(f"kselftest: {ours.counts}")

    # Not root: the runner reports it skipped (exit 4).
    top, inner, _ = runner_output(out / "skip.tap")
    assert "ok 1 selftests: vmcoh: run_vmcoh.sh # SKIP" in top, top
    assert parser.parse_run_tests(top).counts.skipped == 1
    assert any(line.startswith("1..0 # SKIP not root") for line in inner), inner

    # Against an unsafe module the interleavings fail, and so does the collection (exit 1).
    top, inner, _ = runner_output(out / "fail.tap")
    assert "not ok 1 selftests: vmcoh: run_vmcoh.sh # exit=1" in top, top
    assert parser.parse_run_tests(top).counts.failed == 1
    ours = parser.parse_run_tests(inner)
    status = {t.name: t.status for t in ours.subtests}
    assert status["interleavings"] == parser.TestStatus.FAILURE, status
    assert status["unload"] == parser.TestStatus.SUCCESS, status
