"""The atrophy model: how much the ventricles and the brain (GM + WM) have changed at a given age.

Volumes compound from the template anatomy: its ventricles are those of a 60-year-old; its brain
volume that of a 40-year-old, the youngest simulated age, because a brain can only shrink inside
its fixed skull (and the MNI152 brain is large). Everyone ages at the
cognitively-normal rate; MCI and AD subjects switch to their faster rate at disease onset: around
65, but never after their baseline visit (at baseline the diagnosis already shows) and never more
than 10 years before it (so that a 90-year-old's disease has not run for 25 years). Rates are
from the literature for elderly cohorts (e.g. Fotenos 2005, Jack 2004, Nestor 2008 in ADNI):
whole brain -0.3..-0.5 %/yr and ventricles +2..+4 %/yr when cognitively normal, MCI about 1.5x,
AD about 2.5x faster. Each subject's rates vary by a seeded factor around the group's.
"""

import math

import numpy as np

from SynthMedLib.cohort.subject import check_age, rng

REFERENCE_AGES = {"ventricles": 60.0, "brain": 40.0}
ONSET_AGE = 65.0
ONSET_SD = 3.0
MAX_DISEASE_YEARS_AT_BASELINE = 10.0
# Few live longer than this with the disease; afterwards the model falls back to normal aging.
MAX_DISEASE_YEARS = 15.0
# %/yr for cognitively normal subjects, and the factor each diagnosis multiplies them by.
CN_RATES = {"ventricles": 3.0, "brain": -0.4}
DIAGNOSIS_FACTOR = {"CN": 1.0, "MCI": 1.5, "AD": 2.5}
RATE_VARIATION_SD = 0.10
# Ventricles stop growing at 5x the template's (about 75-95 mL): only very old AD subjects get
# there, and beyond it the growth field would stretch the ventricles' centre past what a 4 mm
# field resolves (its Jacobian would approach zero).
MAX_LOG_VENTRICLE_FACTOR = math.log(5.0)  # log-normal, clipped at 2 SD


def _individual_factor(subject):
    return float(np.exp(np.clip(rng(subject.seed, "rates").normal(), -2, 2) * RATE_VARIATION_SD))


def group_rates(diagnosis):
    """The nominal %/yr of a diagnosis group."""
    return {k: v * DIAGNOSIS_FACTOR[diagnosis] for k, v in CN_RATES.items()}


def subject_rates(subject, diagnosis=None):
    """%/yr of this subject (for ``diagnosis``, default its own) once the disease has started."""
    factor = _individual_factor(subject)
    return {k: v * factor for k, v in group_rates(diagnosis or subject.diagnosis).items()}


def onset_age(subject):
    if subject.diagnosis == "CN":
        return math.inf
    jitter = float(np.clip(rng(subject.seed, "onset").normal(), -2, 2)) * ONSET_SD
    onset = min(ONSET_AGE + jitter, subject.baseline_age)
    return max(onset, subject.baseline_age - MAX_DISEASE_YEARS_AT_BASELINE)


def log_volume_factors(subject, age):
    """(ventricles, brain) natural-log volume factors at ``age`` relative to the template."""
    age = check_age(age)
    normal = subject_rates(subject, "CN")
    disease = subject.rates
    onset = onset_age(subject)
    years_disease = min(max(0.0, age - onset), MAX_DISEASE_YEARS)
    factors = []
    for key in ("ventricles", "brain"):
        slow = math.log1p(normal[key] / 100.0)
        fast = math.log1p(disease[key] / 100.0)
        factors.append(slow * (age - REFERENCE_AGES[key]) + (fast - slow) * years_disease)
    return min(factors[0], MAX_LOG_VENTRICLE_FACTOR), factors[1]
