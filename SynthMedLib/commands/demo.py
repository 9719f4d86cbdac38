"""``synthmed demo``: the first thing a newcomer runs. With the embedded demo-brain model it
generates samples at three ages (one noise seed per row: the same synthetic person aging), with
label maps, JSON sidecars, volumes.tsv and a PNG montage, no download. ``--source cohort`` (or a
checkout without the model's weights) renders simulated-cohort subjects instead."""

from dataclasses import dataclass
from pathlib import Path

from SynthMedLib.errors import InputError

# Held-out seeds, one subject per diagnosis, each seen from its 60s to its 90s.
DEMO_SUBJECTS = ((1_000_001, "F", "CN", 62.0), (1_000_002, "M", "MCI", 66.0), (1_000_003, "F", "AD", 70.0))
DEMO_AGES = (60.0, 70.0, 80.0, 90.0)
# The model demo: (sex, diagnosis, noise seed) per row, one column per age.
MODEL_ROWS = (("F", "CN", 0), ("F", "AD", 0), ("M", "MCI", 1))
MODEL_AGES = (60.0, 75.0, 90.0)


def register(subparsers):
    parser = subparsers.add_parser(
        "demo", help="render a few simulated subjects at several ages and write a PNG montage",
        description="Render three simulated subjects (CN, MCI, AD) at ages 60-90: NIfTI T1 and "
        "label maps, volumes.tsv and montage.png in --out. Needs no download.",
    )
    parser.add_argument("--out", default="demo-output", help="output folder (default demo-output)")
    parser.add_argument("--spacing", type=float, default=2.0,
                        help="voxel size in mm of the cohort renders (default 2)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads for the model (default 1: the demo model runs a "
                        "sample in about a second on one thread)")
    parser.add_argument("--source", choices=("auto", "model", "cohort"), default="auto",
                        help="model: generate with demo-brain; cohort: render simulated subjects; "
                        "auto (default): the model when its weights are installed")
    parser.set_defaults(func=run)


def run(args):
    if args.source == "model" or (args.source == "auto" and model_available()):
        import torch

        # One thread by default: on a shared or quota-limited CPU, OpenMP's spinning threads made
        # sampling ~20x slower (26 s vs 1.2 s per sample measured on the 2-core dev machine).
        torch.set_num_threads(max(1, args.threads))
        montage = run_model_demo(args.out)
        print(f"wrote {len(MODEL_ROWS) * len(MODEL_AGES)} generated samples and the montage {montage}")
        return 0
    if args.source == "auto":
        print("the demo-brain weights are not installed: rendering simulated-cohort subjects instead")
    return run_cohort_demo(args)


def run_cohort_demo(args):
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


@dataclass
class _Person:
    """What the montage shows in a row label."""
    participant_id: str
    sex: str
    diagnosis: str


@dataclass
class _Sample:
    """A generated sample shaped like a cohort Rendering, for the montage writer."""
    subject: _Person
    age: float
    image: object
    labels: object
    volumes: dict


def model_available(model_id="demo-brain"):
    """True when the card and the weights the generate pipeline needs are installed."""
    from SynthMedLib.cards import load_card
    from SynthMedLib.errors import SynthMedError
    from SynthMedLib.weights.cache import find_weights
    try:
        card = load_card(model_id)
    except SynthMedError:
        return False
    return all(find_weights(card, card.networks[name].weights) is not None
               for name in card.networks_for("generate"))


def run_model_demo(out, model_id="demo-brain"):
    from tqdm import tqdm

    from SynthMedLib import provenance
    from SynthMedLib.cards import load_card
    from SynthMedLib.cohort import measure_volumes
    from SynthMedLib.cohort.montage import write_montage
    from SynthMedLib.model import Model
    from SynthMedLib.pipelines.generate import generate
    from SynthMedLib.storage import prepare_output_folder

    # The demo is re-run into the same folder by `make demo`: it replaces its previous run.
    folder = prepare_output_folder(out, overwrite=True)
    out = folder.path
    card = load_card(model_id)
    model = Model.from_card(card, device="cpu", needs="generate")
    keys = ("ventricles_ml", "csf_ml", "gm_ml", "wm_ml")
    rows, table = [], ["\t".join(("file", "sex", "diagnosis", "age", "seed") + keys)]
    with tqdm(total=len(MODEL_ROWS) * len(MODEL_AGES), desc="demo", unit="sample") as bar:
        for sex, diagnosis, seed in MODEL_ROWS:
            row = []
            for age in MODEL_AGES:
                sample = generate(model, {"age": age, "sex": sex, "diagnosis": diagnosis},
                                  seed=seed)[0]
                stem = f"{card.id}_{sex}-{diagnosis}_age-{age:g}_seed-{seed}"
                folder.write_image(sample.image, f"{stem}_T1w.nii.gz")
                folder.write_image(sample.labels, f"{stem}_dseg.nii.gz")
                folder.write_json(f"{stem}_T1w.json", sample.provenance,
                                  default=provenance.jsonable)
                volumes = measure_volumes(sample.labels)
                table.append("\t".join([stem, sex, diagnosis, f"{age:g}", str(seed)]
                                        + [f"{volumes[k]:.1f}" for k in keys]))
                row.append(_Sample(_Person(f"seed {seed}", sex, diagnosis), age, sample.image,
                                   sample.labels, volumes))
                bar.update()
            rows.append(row)
    folder.write_text("volumes.tsv", "\n".join(table) + "\n")
    folder.commit(pipeline="demo", model=card.id)
    return write_montage(out / "montage.png", rows,
                         title=f"SynthMed {card.id}: generated (synthetic) T1 + label maps")
