"""``synthmed demo``: the first thing a newcomer runs. For now it renders a few simulated-cohort
subjects at several ages (NIfTI files + a PNG montage); it switches to the demo model later."""

from pathlib import Path

from SynthMedLib.errors import InputError

# Held-out seeds, one subject per diagnosis, each seen from its 60s to its 90s.
DEMO_SUBJECTS = ((1_000_001, "F", "CN", 62.0), (1_000_002, "M", "MCI", 66.0), (1_000_003, "F", "AD", 70.0))
DEMO_AGES = (60.0, 70.0, 80.0, 90.0)


def register(subparsers):
    parser = subparsers.add_parser(
        "demo", help="render a few simulated subjects at several ages and write a PNG montage",
        description="Render three simulated subjects (CN, MCI, AD) at ages 60-90: NIfTI T1 and "
        "label maps, volumes.tsv and montage.png in --out. Needs no download.",
    )
    parser.add_argument("--out", default="demo-output", help="output folder (default demo-output)")
    parser.add_argument("--spacing", type=float, default=2.0, help="voxel size in mm (default 2)")
    parser.set_defaults(func=run)


def run(args):
    from SynthMedLib.cohort import Subject, model_grid, render
    from SynthMedLib.cohort.bids import write_rendering, write_tables
    from SynthMedLib.cohort.montage import write_montage

    model_grid(args.spacing)  # checks the spacing
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    from tqdm import tqdm

    subjects = [Subject(*s) for s in DEMO_SUBJECTS]
    grid, rows = [], []
    with tqdm(total=len(subjects) * len(DEMO_AGES), desc="demo", unit="scan") as bar:
        for subject in subjects:
            renderings = []
            for age in DEMO_AGES:
                rendering = render(subject, age, args.spacing)
                write_rendering(out, rendering)
                rows.append((subject, age, rendering.volumes))
                renderings.append(rendering)
                bar.update()
            grid.append(renderings)
    write_tables(out, subjects, rows)
    montage = write_montage(out / "montage.png", grid)
    print(f"wrote {len(rows)} simulated scans and the montage {montage}")
    return 0
