"""Options and steps shared by the commands that start from a user's scan (counterfactual,
progress): not a command itself (it is not listed in cli.COMMANDS)."""

import re
from pathlib import Path

from SynthMedLib import arguments
from SynthMedLib.errors import InputError

IDENTITY_CHOICES = ("deformation", "deformation+residual", "intensity", "none")


def add_model_options(parser):
    parser.add_argument("--model", required=True, help="model id (e.g. demo-brain) or card path")
    parser.add_argument("--steps", type=int, default=None,
                        help="sampler steps (default: the card's default_steps)")
    parser.add_argument("--identity-method", "--identity", dest="identity_method",
                        choices=IDENTITY_CHOICES, default="deformation",
                        help="how the input's own detail is kept: apply the predicted "
                        "deformation (default), the deformation plus the intensity change it "
                        "does not explain, add the predicted intensity change, or none (the "
                        "model's image)")
    parser.add_argument("--condition", action="append", default=[], metavar="NAME=VALUE",
                        help="a further conditioning variable of the model (repeatable)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def add_brain_extraction_option(parser):
    parser.add_argument("--brain-extraction", choices=("auto", "on", "off"), default="auto",
                        help="a scan with its skull on is brain-extracted (deepbet) before the "
                        "model sees it and the result is the whole head again, the change only "
                        "inside the brain (mask written as *_brainmask.nii.gz); auto (default): "
                        "only when the scan is not already skull-stripped")


def add_volume_course_option(parser):
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--volume-course", default=None, metavar="JSON",
                       help="auxiliary volume model (a fitted course, e.g. bench/results/"
                       "volume_course.json): it sets the size of each change to its expected "
                       "ventricle volume; the model still gives the pattern. Default: the course "
                       "the model ships, if any (demo-brain does)")
    group.add_argument("--no-volume-course", action="store_true",
                       help="the model alone sets the size of the change, even if it ships a course")


def load_volume_course(args):
    from SynthMedLib.pipelines.volume_course import chosen_volume_course
    return chosen_volume_course(args.volume_course, off=args.no_volume_course)


def add_subject_options(parser):
    parser.add_argument("--age", type=float, required=True, help="the subject's age at the scan")
    parser.add_argument("--sex", required=True, help="M or F (as the model's card codes it)")
    parser.add_argument("--diagnosis", required=True, help="e.g. CN, MCI, AD")


def parse_numbers(text, what):
    try:
        values = [float(v) for v in re.split(r"[,\s]+", text.strip()) if v]
    except ValueError:
        raise InputError(f"{what} must be numbers separated by commas, e.g. 70,80,90; "
                         f"got {text!r}") from None
    if not values:
        raise InputError(f"give at least one value for {what}")
    return values


def extra_conditions(pairs):
    conditions = {}
    for pair in pairs:
        if "=" not in pair:
            raise InputError(f"--condition needs NAME=VALUE, got {pair!r}")
        name, value = pair.split("=", 1)
        try:
            conditions[name.strip()] = float(value)
        except ValueError:
            conditions[name.strip()] = value.strip()
    return conditions


def add_output_options(parser):
    parser.add_argument("--out", required=True, help="output folder (new or empty)")
    parser.add_argument("--overwrite", action="store_true",
                        help="reuse a non-empty --out: the previous run's files are replaced")


def output_folder(args):
    """The checked --out (a storage.RunFolder), before any computation."""
    from SynthMedLib.storage import prepare_output_folder

    return prepare_output_folder(args.out, overwrite=args.overwrite)


def read_scan(path):
    """A scan read strictly (truncated files and NaN/inf voxels refused)."""
    from SynthMedLib.storage import read_image

    image = read_image(path)
    if image.GetDimension() == 4 and image.GetSize()[3] == 1:
        # Some converters write a 3D scan as 4D with one volume; that is still one 3D scan.
        image = image[:, :, :, 0]
    return image


def scan_stem(path):
    name = Path(path).name
    for suffix in (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd", ".gz"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


def prepare_runtime(args, pipeline):
    """(Model with the networks ``pipeline`` needs, Progress) for a command."""
    import torch

    from SynthMedLib.model import Model
    from SynthMedLib.sampling.progress import Progress

    threads = arguments.threads(args.threads)
    if threads:
        torch.set_num_threads(threads)
    # The networks load inside the pipeline, after its arguments are checked.
    model = Model.from_card(args.model, device=args.device)
    model.needs(pipeline)
    return model, Progress(bar=not args.no_progress)


def subject_conditions(args, card):
    """--condition pairs plus --age/--sex/--diagnosis where the model takes them (a note for
    a subject option the model does not use; an unknown --condition is refused later)."""
    import sys

    conditions = extra_conditions(args.condition)
    known = {v["name"] for v in (card.get("conditioning") or {}).get("variables", [])}
    for name in ("age", "sex", "diagnosis"):
        value = getattr(args, name)
        if name in known:
            conditions.setdefault(name, value)
        elif value is not None:
            print(f"synthmed: note: model '{card['id']}' does not take --{name}; ignored",
                  file=sys.stderr)
    return conditions


def report_warnings(series):
    import sys

    for warning in series.warnings:
        print(f"synthmed: warning: {warning}", file=sys.stderr)


def inversion_cache_folder():
    from SynthMedLib.weights.cache import home

    return home() / "cache" / "inversions"
