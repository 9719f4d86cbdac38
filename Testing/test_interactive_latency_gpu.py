"""bench/interactive_latency_gpu.py checked on the CPU before it goes to a lent GPU machine: it runs
in a child process where SimpleITK, nibabel and nilearn cannot be imported (gpu_machine.py) (the GPU machine's
image lacks them), times every stage of both requests and writes a summary that follows from its
rows."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gpu_machine import environment

ROOT = Path(__file__).resolve().parent.parent
STAGES = {"regeneration", "decode", "fields", "volume scale and field", "way back"}


def test_runs_without_simpleitk_and_summarises_its_rows(tmp_path):
    env = environment(tmp_path)
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "interactive_latency_gpu.py"), "--devices",
                           "cuda,cpu", "--targets", "2", "--repeats", "1", "--threads", "1", "--out", str(out)],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((out / "interactive_latency_gpu.json").read_text())
    rows = [r for r in results["rows"] if r["device"] == "cpu"]
    assert sorted(r["targets"] for r in rows) == [1, 2]
    for row in rows:
        assert set(row["stages"]) == STAGES and all(v > 0 for v in row["stages"].values())
        assert row["seconds"] == pytest.approx(sum(row["stages"].values()), abs=0.01)
    one, two = (next(r["seconds"] for r in rows if r["targets"] == n) for n in (1, 2))
    summary = next(s for s in results["summary"] if s["device"] == "cpu")
    assert summary["n_vs_1"] == pytest.approx(two / one, abs=0.01)
    assert summary["per_extra_target"] == pytest.approx(two - one, abs=0.01)
    assert "| cpu |" in (out / "interactive_latency_gpu.md").read_text()
