"""Samples per hour of ``synthmed dataset`` with 1 process and with N under torchrun, side by side
in one run, and whether the two runs wrote the same bytes.

    python bench/dataset_throughput.py [--model demo-brain] [--n 8] [--processes 2] [--device cpu]

Each process uses one torch thread on the CPU (one GPU each with --device cuda). Writes
bench/results/dataset_throughput.json.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def run(processes, out, args):
    command = [sys.executable, "-m", "SynthMedLib.cli", "dataset", "--model", args.model, "--distribution",
               str(args.spec), "--samples", str(args.n), "--seed", "0", "--threads", "1", "--device", args.device,
               "--no-progress", "--out", str(out)]
    if processes > 1:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
                   str(processes), *command[1:]]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    start = time.perf_counter()
    subprocess.run(command, env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def files(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(Path(folder).rglob("*")) if p.is_file()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="demo-brain")
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "dataset_throughput.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        args.spec = Path(work) / "spec.json"
        args.spec.write_text(json.dumps({"age": {"uniform": [55, 90]}, "sex": {"categorical": {"F": 1, "M": 1}},
                                         "diagnosis": {"categorical": {"CN": 2, "MCI": 1, "AD": 1}}}))
        seconds = {1: run(1, Path(work) / "one", args), args.processes: run(args.processes, Path(work) / "many", args)}
        identical = files(Path(work) / "one") == files(Path(work) / "many")
    result = {"model": args.model, "samples": args.n, "device": args.device, "machine": platform.processor(),
              "cpus": os.cpu_count(), "load_average": os.getloadavg(),
              "seconds": {str(k): round(v, 1) for k, v in seconds.items()},
              "samples_per_hour": {str(k): round(args.n / v * 3600, 1) for k, v in seconds.items()},
              "speed_up": round(seconds[1] / seconds[args.processes], 2), "identical_bytes": identical}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
