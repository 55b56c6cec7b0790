"""The backed object's load protocol catches its broken variants, in a VM.

tests/guest/backing.sh runs the load-vs-invalidate scenarios (one driven by
the server's timing, one under stress) against the safe module and against
each unsafe variant, and on the safe module an interleaving driven by hold
points.  The safe module must pass both; each variant must fail
the deterministic scenario with the failure that names its bug.  The stress
scenario's verdict on the variants is reported, not required: whether
stress alone hits the window is a matter of luck.
"""

import json

import pytest

from conftest import KERNELS, explain, module_for, vmrun

pytestmark = pytest.mark.vm

SCENARIO = "ALoadInvalidatedInFlightIsDroppedAndRedone"
STRESS = "StressNoReadSeesAGenerationOlderThanTheLastInvalidation"
# Interleavings driven by hold points, run on the safe module only.
HOLD = "ALoadStartedOverAMappedEntryLeavesNoStalePte"
# Each variant, and what the scenario must say about it.
VARIANTS = {
    "load_after_invalidate": "a stale answer was installed",
    "invalidate_waits_load": "INVALIDATE must not wait for the load in flight",
}


def results(report):
    """{test name: (failure messages, seconds)} of a gtest JSON report."""
    data = json.loads(report.read_text())
    return {t["name"]: ("\n".join(f["failure"] for f in t.get("failures", [])),
                        float(t["time"].rstrip("s")))
            for s in data["testsuites"] for t in s["testsuite"]}


@pytest.mark.parametrize("kernel", KERNELS)
def test_unsafe_load_protocols_are_caught(built, results_dir, kernel):
    module = module_for(kernel)
    assert module.exists(), f"{module} missing: make module-{kernel}"
    out = results_dir / f"backing-{kernel}"
    out.mkdir(exist_ok=True)
    proc = vmrun(["tests/guest/backing.sh", out, module], log=f"backing-{kernel}",
                 kernel=kernel, timeout=900)
    assert proc.returncode == 0, explain(proc)

    safe = results(out / "backing-safe.json")
    assert set(safe) == {SCENARIO, STRESS, HOLD}
    for name, (failures, _) in safe.items():
        assert not failures, f"safe module failed {name}:\n{failures}"

    for variant, message in VARIANTS.items():
        report = out / f"backing-{variant}.json"
        assert report.exists(), f"{variant}: no report; {explain(proc)}"
        found = results(report)
        failures, seconds = found[SCENARIO]
        assert message in failures, f"{variant} not caught:\n{failures or 'passed'}"
        stress = "caught" if found[STRESS][0] else "not caught"
        print(f"{kernel} {variant}: caught by {SCENARIO} in {seconds:.3f} s; "
              f"stress {stress} ({found[STRESS][1]:.1f} s)")
