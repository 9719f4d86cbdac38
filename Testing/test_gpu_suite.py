"""bench/gpu_suite.py checked on the CPU before it goes to a lent GPU machine: the tiny mode runs
end to end in a child process where SimpleITK, nibabel and nilearn cannot be imported (the GPU
machine's image lacks them), writes JSON + Markdown, and its budget skips cases instead of
overrunning."""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gpu_machine import environment

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
# One of each kind of case (the others repeat the same code on other sizes), to keep this test short.
CASES = ("environment,brainldm unet,brainldm sample,maisi256 decode,maisi256 sample,demo-brain unet,"
         "compile demo-brain")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("gpu_suite")
    env = environment(root)
    out = root / "out"
    done = subprocess.run([sys.executable, str(BENCH / "gpu_suite.py"), "--tiny", "--device", "cpu", "--threads", "1",
                           "--budget", "600", "--compile-backend", "eager", "--only", CASES, "--out", str(out)],
                          env=env, capture_output=True, text=True, timeout=600)
    return done, out


def test_tiny_suite_runs_end_to_end_without_the_missing_packages(tiny_run):
    done, out = tiny_run
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads((out / "gpu_suite.json").read_text())
    assert [case["name"] for case in results["cases"]] == CASES.split(",")
    assert all(case["status"] == "ok" for case in results["cases"]), [c.get("error") for c in results["cases"]]
    rows = [row for case in results["cases"] for row in case["rows"]]
    assert all(row["status"] == "ok" for row in rows if row["what"] != "matrix product")
    markdown = (out / "gpu_suite.md").read_text()
    assert "## Summary" in markdown and "brainldm" in markdown


def test_tiny_suite_measures_what_it_claims(tiny_run):
    _, out = tiny_run
    results = json.loads((out / "gpu_suite.json").read_text())
    rows = {(r["model"], r["what"], r["variant"]): r for c in results["cases"] for r in c["rows"]}
    # fp32 is its own reference; bf16 differs by rounding, not by a different function
    assert rows[("brainldm", "unet step", "fp32")]["error"] == 0.0
    assert 0 < rows[("brainldm", "unet step", "bf16")]["error"] < 0.1
    # SDPA is a kernel choice: same weights, same output to float precision
    assert rows[("brainldm", "unet step", "fp32, SDPA on")]["error"] < 1e-4
    # tiles with the decoder's reach as halo and whole-volume norms reproduce the whole decode
    assert rows[("maisi256", "decode", "tiled 4 norm=volume fp32")]["error"] < 1e-4
    # more DPM-Solver++ steps get closer to the many-step reference; all samplers solve the same ODE
    dpm = [rows[("brainldm", "sample", f"SynthMed DPM++2M-{n} fp32")]["error"] for n in (2, 3)]
    assert dpm[1] < dpm[0] < 1.0
    # the UNet's FLOPs are counted (meta device), so the floor ratio can be reported
    assert rows[("brainldm", "unet step", "fp32")]["tflop"] > 0
    compiled = [r for (m, w, v), r in rows.items() if m == "demo-brain" and "torch.compile" in v]
    assert compiled and compiled[0]["error"] < 1e-4


def test_budget_skips_the_cases_it_cannot_afford_and_keeps_the_rest(tmp_path):
    sys.path[:0] = [str(BENCH), str(ROOT)]
    try:
        import gpu_suite
    finally:
        del sys.path[:2]
    ctx = gpu_suite.Context("cpu", tiny=False, deadline=time.monotonic() + 5)
    calls = []

    def case(ctx):
        calls.append(1)
        return [{"model": "x", "what": "t", "variant": "v", "status": "ok", "seconds": 0.1}]

    def broken(ctx):
        raise RuntimeError("boom")

    plan = [("cheap", 1, case), ("broken", 1, broken), ("dear", 60, case), ("cheap again", 1, case)]
    results = gpu_suite.run_suite(ctx, tmp_path, plan, {"name": "cpu"})
    statuses = [case["status"] for case in results["cases"]]
    assert statuses == ["ok", "error", "skipped (budget)", "ok"] and len(calls) == 2
    written = json.loads((tmp_path / "gpu_suite.json").read_text())
    assert [c["status"] for c in written["cases"]] == statuses and "boom" in written["cases"][1]["error"]
