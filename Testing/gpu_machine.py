"""The lent GPU machine's Python, as far as a test on this one can have it: a child process in
which the packages that machine's image lacks cannot be imported (a bench meant for it must run
without them)."""

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Not on the GPU machine's image (the device tool's KINDS.md package list).
NOT_ON_THE_GPU_MACHINE = ("SimpleITK", "nibabel", "nilearn", "generative")


def environment(folder: Path, missing=NOT_ON_THE_GPU_MACHINE) -> dict:
    """os.environ for a child process in which each of ``missing`` raises ImportError (stand-in
    packages written under ``folder``, first on PYTHONPATH), the repository importable, one
    OpenMP thread."""
    blocked = folder / "blocked"
    for name in missing:
        (blocked / name).mkdir(parents=True, exist_ok=True)
        (blocked / name / "__init__.py").write_text(f"raise ImportError('{name} is not on the GPU machine')\n")
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(blocked), str(ROOT)]), OMP_NUM_THREADS="1")
