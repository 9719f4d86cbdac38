"""The demo-brain v3 recipe on one GPU inside a fixed wall-clock budget.

A lent GPU machine gives a session minutes, not hours, so the number of steps is fitted to the
time: each stage first runs a short probe (inside its learning-rate warm-up, which does not depend
on the total), its speed is read from the loss log, and the stage then resumes from the probe's
checkpoint with as many steps as its share of the remaining time allows (never more than its
config says). The steps actually run are written to ``steps.json``; putting them into the configs
makes the plain recipe (``RECIPE=demo-brain-v3 make train-demo``) reproduce the run.

    python training/demo-brain/gpu_recipe.py --data runs/transfer/cohort --budget 450 --out OUT

``--data`` is a dataset folder (see pack_dataset.py) used instead of rendering the cohort. After
each stage its weights, the card and the logs are copied to ``--out``, so an interrupted call
still returns the finished stages.
"""

import argparse
import csv
import json
import shutil
import tarfile
import time
from pathlib import Path

from SynthMedLib.train.config import load_config
from SynthMedLib.train.run import run_stage

TRAINING = Path(__file__).resolve().parents[1]  # training/<recipe>/train-<stage>.json
SHARES = {"autoencoder": 0.38, "diffusion": 0.42, "controlnet": 0.20}
PROBE_STEPS = 40  # below every v3 config's warm-up, so the probe's LR does not depend on the total


def seconds_per_step(run_dir):
    """From the loss log, between its first and last rows (the first row holds the start-up and
    cuDNN's kernel search)."""
    with open(Path(run_dir) / "log.tsv") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    first, last = rows[0], rows[-1]
    return (float(last["seconds"]) - float(first["seconds"])) / max(1, int(last["step"]) - int(first["step"]))


def send_back(card, fitted, out):
    """What the lent machine returns after each stage: the card, every exported weights file it
    names, the fitted steps and the stages' logs (a few files: the tool returns at most 8)."""
    card_data = json.loads(card.read_text())
    for name in SHARES:
        weights = card.parent / card_data["weights"][card_data["networks"][name]["weights"]]["file"]
        if weights.exists():
            shutil.copy2(weights, out / weights.name)
    shutil.copy2(card, out / "card.json")
    (out / "steps.json").write_text(json.dumps(fitted, indent=1))
    with tarfile.open(out / "logs.tar.gz", "w:gz") as archive:
        for name in ("log.tsv", "result.json", "steps.json"):
            for item in sorted(card.parent.glob(f"*/{name}")):
                archive.add(item, arcname=str(item.relative_to(card.parent)))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", default="demo-brain-v3")
    parser.add_argument("--data", required=True, help="dataset folder to train on")
    parser.add_argument("--budget", type=float, required=True, help="seconds for all stages")
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--out", required=True, help="folder to copy results into")
    parser.add_argument("--probe-steps", type=int, default=PROBE_STEPS)
    parser.add_argument("--stages", default=",".join(SHARES), help="comma-separated, in order")
    parser.add_argument("--configs", help="folder of train-<stage>.json (default: training/<recipe>)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    deadline = time.time() + args.budget
    fitted = {}
    stages = args.stages.split(",")
    shares = [SHARES[stage] for stage in stages]
    for index, stage in enumerate(stages):
        path = Path(args.configs or TRAINING / args.recipe) / f"train-{stage}.json"
        config = load_config(path)
        overrides = {"dataset": {"folder": args.data}, "threads": args.threads}
        share = shares[index] / sum(shares[index:])
        started = time.time()
        stage_end = started + share * (deadline - started)
        probe = args.probe_steps
        run_stage(path, {**overrides, "steps": probe}, progress=False, export=False)
        # A tiny probe can log the same (rounded) time on its first and last rows: never divide by 0.
        rate = max(seconds_per_step(config["run_dir"]), 1e-3)
        # Keep some of the share (15 s, less for a short one) for the export and the next start.
        reserve = min(15.0, 0.2 * (stage_end - started))
        more = int((stage_end - time.time() - reserve) / rate)
        steps = min(int(config["steps"]), probe + more)
        steps = max(probe, steps - steps % int(config["log_every"]))
        result = run_stage(path, {**overrides, "steps": steps}, progress=False)
        fitted[stage] = {"steps": result["step"], "seconds_per_step": round(rate, 4),
                         "last_losses": result["last_losses"]}
        print(f"{stage}: {result['step']} steps at {rate * 1000:.1f} ms/step; "
              f"losses {result['last_losses']}", flush=True)
        (Path(config["run_dir"]) / "steps.json").write_text(json.dumps(fitted, indent=1))
        send_back(Path(config["card"]), fitted, out)
    print(f"done with {deadline - time.time():.0f} s of the budget left")


if __name__ == "__main__":
    main()
