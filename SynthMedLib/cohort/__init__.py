"""The simulated brain cohort: ground truth for generation, counterfactual aging and progression.

Each subject is a seeded smooth diffeomorphism of the MNI152 template shipped in nilearn, scaled by
sex and head size, with its own contrast, bias field and noise, aged by a known atrophy model. See
README.md "The simulated cohort" and DESIGN.md.

    from SynthMedLib.cohort import Subject, render, model_grid, population
    rendering = render(Subject(7, "F", "AD", 72.0), age=80, spacing=3.0)
    rendering.image, rendering.labels, rendering.volumes
"""

from SynthMedLib.cohort.grid import model_grid
from SynthMedLib.cohort.renderer import Rendering, render
from SynthMedLib.cohort.tissues import LABELS, VOLUME_KEYS, measure_volumes
from SynthMedLib.cohort.subject import HELD_OUT_SEED, Subject, population, subject_from_seed

__all__ = [
    "HELD_OUT_SEED", "LABELS", "VOLUME_KEYS", "Rendering", "Subject", "measure_volumes",
    "model_grid", "population", "render", "subject_from_seed",
]
