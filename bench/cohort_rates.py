"""Measured vs configured aging rates of the simulated cohort, and the time to render a subject.

    .venv/bin/python bench/cohort_rates.py [--n 4] [--spacing 3]

Renders n subjects per diagnosis at four ages inside one phase of their trajectory, fits %/yr from
the rendered label maps, and prints them beside the configured rates (ratio measured/configured).
"""

import argparse
import statistics
import time

import torch

from SynthMedLib.cohort import Subject, render
from SynthMedLib.cohort.aging import group_rates
from SynthMedLib.cohort.aging_fields import aging_velocities
from SynthMedLib.cohort.rates import measure_rates
from SynthMedLib.cohort.subject import subject_from_seed


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=4)
    parser.add_argument("--spacing", type=float, default=3.0)
    args = parser.parse_args()
    torch.set_num_threads(1)

    start = time.perf_counter()
    aging_velocities()
    print(f"aging fields ready (disk cache or calibration) in {time.perf_counter() - start:.1f} s")
    start = time.perf_counter()
    render(Subject(123, "F", "CN", 70.0), 70.0, args.spacing)
    print(f"first render of the process (loads the template): {time.perf_counter() - start:.2f} s")
    for spacing in (3.0, 2.0, 1.0):
        wall, cpu = time.perf_counter(), time.process_time()
        for seed in range(3):
            render(Subject(124 + seed, "M", "AD", 72.0), 75.0, spacing)
        print(f"render a new subject at {spacing:g} mm: {(time.perf_counter() - wall) / 3:.2f} s "
              f"wall, {(time.process_time() - cpu) / 3:.2f} s CPU")

    print(f"\n{'group':5} {'ventricles %/yr':>28} {'brain (GM+WM) %/yr':>28}")
    print(f"{'':5} {'measured':>9} {'configured':>10} {'ratio':>6} {'measured':>9} {'configured':>10} {'ratio':>6}")
    for diagnosis in ("CN", "MCI", "AD"):
        ratios = {"ventricles": [], "brain": []}
        measured = {"ventricles": [], "brain": []}
        for i in range(args.n):
            subject = subject_from_seed(2_000_000 + 100 * i, diagnosis)
            result = measure_rates(subject, spacing=args.spacing)
            for key in ratios:
                measured[key].append(result[key])
                ratios[key].append(result[key] / subject.rates[key])
        nominal = group_rates(diagnosis)
        cells = []
        for key in ("ventricles", "brain"):
            cells.append(f"{statistics.mean(measured[key]):9.2f} {nominal[key]:10.2f} "
                         f"{statistics.mean(ratios[key]):6.2f}")
        print(f"{diagnosis:5} {cells[0]} {cells[1]}")


if __name__ == "__main__":
    main()
