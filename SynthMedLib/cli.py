"""The ``synthmed`` command: a thin dispatcher over ``SynthMedLib.commands``."""

import argparse
import importlib
import sys

from SynthMedLib import __version__
from SynthMedLib.errors import SynthMedError

# Order is the order shown in ``synthmed --help``.
COMMANDS = (
    "demo",
    "cohort",
    "generate",
    "train",
    "evaluate",
    "counterfactual",
    "progression",
    "models",
    "dataset",
    "audit",
    "study",
    "downstream",
)


def build_parser():
    parser = argparse.ArgumentParser(
        prog="synthmed",
        description="Synthetic 3D medical images from diffusion models: generate, counterfactual "
        "aging, disease progression, training and evaluation.",
    )
    parser.add_argument("--version", action="version", version=f"synthmed {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"SynthMedLib.commands.{name}").register(subparsers)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except SynthMedError as error:
        print(f"synthmed: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("synthmed: cancelled", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
