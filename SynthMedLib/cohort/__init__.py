"""The simulated brain cohort: ground truth for generation, counterfactual aging and progression.

Each subject is a seeded smooth diffeomorphism of the MNI152 template shipped in nilearn, scaled by
sex and head size, with its own contrast, bias field and noise, aged by a known atrophy model. See
README.md "The simulated cohort" and docs/DESIGN.md.

    from SynthMedLib.cohort import Subject, render, model_grid, population
    rendering = render(Subject(7, "F", "AD", 72.0), age=80, spacing=3.0)
    rendering.image, rendering.labels, rendering.volumes
"""

from SynthMedLib.cohort.grid import model_grid
from SynthMedLib.cohort.renderer import Rendering, render
from SynthMedLib.cohort.subject import HELD_OUT_SEED, Subject, population, subject_from_seed
from SynthMedLib.cohort.tissues import LABELS, SEGMENTS, VOLUME_KEYS, measure_volumes

# Changes whenever the same (subject, age, grid) renders differently: put it in the key of any
# cache of rendered subjects.
MODEL_VERSION = 3


def warm_up():
    """Load the template and the aging fields now, e.g. before forking render workers, so that
    they inherit them instead of each loading (or, on a new machine, calibrating) them."""
    from SynthMedLib.cohort.aging_fields import aging_velocities
    from SynthMedLib.cohort.template import load_template

    load_template()
    aging_velocities()


__all__ = [
    "HELD_OUT_SEED", "LABELS", "MODEL_VERSION", "SEGMENTS", "VOLUME_KEYS", "Rendering", "Subject",
    "measure_volumes", "model_grid", "population", "render", "subject_from_seed", "warm_up",
]
