"""Measure the aging rates a rendering really shows, from its label maps: the check that the
atrophy model's configured rates come out of the renderer (and the table in the README)."""

import numpy as np

from SynthMedLib.cohort.aging import (
    MAX_DISEASE_YEARS,
    MAX_LOG_VENTRICLE_FACTOR,
    log_volume_factors,
    onset_age,
)


def brain_ml(volumes):
    return volumes["gm_ml"] + volumes["wm_ml"]


def fitted_rate(ages, values):
    """%/yr of a compounding trajectory: least-squares slope of log(value) against age."""
    slope = np.polyfit(np.asarray(ages, float), np.log(np.asarray(values, float)), 1)[0]
    return float(np.expm1(slope) * 100.0)


def rate_ages(subject, count=4, span=10.0):
    """Ages inside one phase of the subject's trajectory (after onset for MCI/AD, within the
    disease window, before the ventricles' cap) so that a single rate describes them."""
    start = max(subject.baseline_age, 60.0)
    onset = onset_age(subject)
    if np.isfinite(onset):
        start = max(onset, 60.0)
        span = min(span, onset + MAX_DISEASE_YEARS - start)
    while span > 2.0 and log_volume_factors(subject, start + span)[0] >= MAX_LOG_VENTRICLE_FACTOR:
        span -= 1.0
    return [round(start + span * i / (count - 1), 2) for i in range(count)]


def measure_rates(subject, ages=None, spacing=3.0):
    """Rendered volumes at ``ages`` and the fitted %/yr of the ventricles and of GM+WM."""
    from SynthMedLib.cohort.renderer import render

    ages = ages or rate_ages(subject)
    volumes = [render(subject, age, spacing).volumes for age in ages]
    return {
        "ages": ages,
        "volumes": volumes,
        "ventricles": fitted_rate(ages, [v["ventricles_ml"] for v in volumes]),
        "brain": fitted_rate(ages, [brain_ml(v) for v in volumes]),
    }
