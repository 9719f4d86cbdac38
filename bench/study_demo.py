"""The README's study and downstream tables for the demo model, from scratch and resumable.

    python bench/study_demo.py [--work runs/study-demo] [--quick]

1. reference: 64 held-out cohort subjects, each at its own baseline age (synthmed cohort --ages baseline)
2. synthetic: one demo-brain sample per reference subject, same age/sex/diagnosis (synthmed dataset)
3. truth: 240 more held-out subjects: the population value of each coefficient
4. synthmed study (ventricles, GM, WM) -> bench/results/study/
5. synthmed downstream: k = 4, 8 real (held-out), m = 32 synthetic, 3 seeds, 8 real test subjects
   -> bench/results/downstream/
Every step skips what an earlier run finished (dataset and cohort folders are checked by their tables).
"""

import argparse
import csv
import subprocess
import sys
from pathlib import Path

from SynthMedLib.cohort import HELD_OUT_SEED

REPO = Path(__file__).resolve().parent.parent
# Seeds of the held-out population used here only (the evaluation and scoring benches use others).
SEEDS = {"reference": HELD_OUT_SEED + 40000, "truth": HELD_OUT_SEED + 50000, "real": HELD_OUT_SEED + 60000,
         "test": HELD_OUT_SEED + 70000}


def synthmed(*args):
    command = [sys.executable, "-m", "SynthMedLib.cli", *map(str, args)]
    print("+", " ".join(command[2:]), flush=True)
    subprocess.run(command, check=True)


def cohort(folder, name, n):
    if not (folder / "volumes.tsv").is_file():
        synthmed("cohort", "--n", n, "--seed", SEEDS[name], "--ages", "baseline", "--spacing", 3,
                 "--workers", 2, "--out", folder)
    return folder


def covariates_of(reference, path):
    """The reference's (age, sex, diagnosis), one row per scan, as a dataset covariate table."""
    with open(reference / "participants.tsv", newline="") as stream:
        people = {row["participant_id"]: row for row in csv.DictReader(stream, delimiter="\t")}
    with open(reference / "volumes.tsv", newline="") as stream:
        scans = list(csv.DictReader(stream, delimiter="\t"))
    lines = ["participant_id\tage\tsex\tdiagnosis"]
    lines += [f"{s['participant_id']}\t{s['age']}\t{people[s['participant_id']]['sex']}\t"
              f"{people[s['participant_id']]['diagnosis']}" for s in scans]
    path.write_text("\n".join(lines) + "\n")
    return path


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default=str(REPO / "runs" / "study-demo"))
    parser.add_argument("--results", default=str(REPO / "bench" / "results"))
    parser.add_argument("--quick", action="store_true", help="small sizes, to check the script")
    args = parser.parse_args()
    work, results = Path(args.work), Path(args.results)
    work.mkdir(parents=True, exist_ok=True)
    sizes = dict(reference=12, truth=24, real=4, test=2, m=4, k="2,4", seeds=2, steps=5) if args.quick else \
        dict(reference=64, truth=240, real=8, test=8, m=32, k="4,8", seeds=3, steps=200)

    reference = cohort(work / "reference", "reference", sizes["reference"])
    table = covariates_of(reference, work / "covariates.tsv")
    synthetic = work / "synthetic"
    if not (synthetic / "manifest.tsv").is_file():
        synthmed("dataset", "--model", "demo-brain", "--covariates", table, "--seed", 0, "--threads", 1,
                 "--out", synthetic)
    truth = cohort(work / "truth", "truth", sizes["truth"])
    synthmed("study", "--reference", reference, "--synthetic", synthetic, "--truth", truth,
             "--out", results / "study")
    real, test = cohort(work / "real", "real", sizes["real"]), cohort(work / "test", "test", sizes["test"])
    synthmed("downstream", "--real", real, "--synthetic", synthetic, "--test", test, "--k", sizes["k"],
             "--m", sizes["m"], "--seeds", sizes["seeds"], "--steps", sizes["steps"], "--threads", 1,
             "--out", results / "downstream")


if __name__ == "__main__":
    main()
