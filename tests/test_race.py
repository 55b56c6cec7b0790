"""The race harness's scenarios: against /dev/vmcoh in a VM, and against
the kernel's own page cache (tmpfs) on the host as a reference.

Each scenario runs with threads and with separate processes for
VMCOH_RACE_SECONDS (default 10) per mode.  Iterations, samples and
violations per scenario are printed; pytest -s shows them.
"""

import json
import os
import subprocess

import pytest

from conftest import RACE, ROOT, explain, vmrun

SCENARIOS = ["write-vs-fault", "punch-vs-fault", "truncate-vs-fault"]
SECONDS = float(os.environ.get("VMCOH_RACE_SECONDS", "10"))


def check_report(path, scenario):
    doc = json.loads(path.read_text())
    assert doc["results"], "no scenario ran"
    for result in doc["results"]:
        counters = result["counters"]
        print(f"{result['name']}: ops={counters['ops']} samples={counters['samples']} "
              f"decisive={counters['decisive']} violations={result['violations']} "
              f"seed={doc['seed']}")
        assert result["scenario"] == scenario
        assert result["violations"] == 0, json.dumps(result["violation_records"][:3], indent=1)
        assert result["status"] == "passed", result["problems"]
        assert counters["ops"] > 0 and counters["samples"] > 0
    assert {r["mode"] for r in doc["results"]} == {"threads", "processes"}


@pytest.mark.vm
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_scenario_on_vmcoh(built, results_dir, scenario):
    report = results_dir / f"race-{scenario}.json"
    report.unlink(missing_ok=True)
    cmd = (f"tools/guest/run-harness --scenario {scenario} --mode both "
           f"--duration {SECONDS:g} --format json > {report}")
    proc = vmrun(["sh", "-c", cmd], log=f"race-{scenario}",
                 timeout=int(6 * SECONDS) + 180)
    assert report.exists() and report.stat().st_size, explain(proc)
    check_report(report, scenario)
    assert proc.returncode == 0, explain(proc)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_scenario_on_tmpfs_reference(built, results_dir, tmp_path, scenario):
    """The kernel's page cache is correct: the oracle must agree."""
    target = f"/dev/shm/vmcoh-race-{os.getpid()}-{scenario}"
    report = results_dir / f"race-tmpfs-{scenario}.json"
    try:
        with open(report, "w") as out:
            proc = subprocess.run(
                [str(RACE), "--target", target, "--scenario", scenario, "--mode", "both",
                 "--duration", "3", "--format", "json"],
                cwd=ROOT, stdout=out, stderr=subprocess.PIPE, text=True, timeout=300)
    finally:
        if os.path.exists(target):
            os.unlink(target)
    assert proc.returncode == 0, proc.stderr
    check_report(report, scenario)
