"""The demo model's volume course, fitted on simulated-cohort subjects of the *training* range
(seeds below HELD_OUT_SEED) rendered at baseline and years later. It lives with the evaluation
code because it renders the cohort; the product reads the fitted course from the card folder."""

from SynthMedLib.cohort import HELD_OUT_SEED, population, render
from SynthMedLib.pipelines.volume_course import VolumeCourse, fit_volume_course


def fit_from_cohort(subjects: int = 12, seed: int = 0, years: float = 10.0, spacing: float = 3.0) -> VolumeCourse:
    """Fit to training-cohort subjects rendered at baseline and ``years`` later."""
    records = []
    for index, diagnosis in enumerate(("CN", "MCI", "AD")):
        # Other seeds per diagnosis: each group gets its own anatomies.
        for subject in population(subjects, seed + index * subjects, diagnosis=diagnosis):
            if subject.seed >= HELD_OUT_SEED:
                raise ValueError("the volume course must be fitted on training seeds only")
            for age in (subject.baseline_age, min(95.0, subject.baseline_age + years)):
                volumes = render(subject, age, spacing=spacing).volumes
                records.append((subject.seed, subject.diagnosis, age, volumes))
    return fit_volume_course(records, name=f"cohort-log-linear-seed{seed}")
