"""A simulated subject: who it is (seed, sex, diagnosis, baseline age) and what follows from the seed.

Every random property is drawn from its own stream of ``numpy.random.SeedSequence([seed, stream])``
so that adding a new property never changes the existing ones, and the same seed is the same
person in every population it appears in.
"""

from dataclasses import dataclass

import numpy as np

from SynthMedLib.errors import InputError

SEXES = ("M", "F")
DIAGNOSES = ("CN", "MCI", "AD")
AGE_RANGE = (40.0, 100.0)
# Training uses subject seeds below this; held-out evaluation uses seeds at or above it.
HELD_OUT_SEED = 1_000_000

# The MNI152 brain is larger than an average adult brain (intracranial volume about 1.9 L against
# about 1.45 L); the cohort's mean linear head size relative to the template.
MEAN_HEAD_SCALE = 0.92
# Men's heads about 3.5 % larger (linear) than women's; applied symmetrically around the mean.
SEX_SCALE = {"M": 1.0175, "F": 1.0 / 1.0175}
HEAD_SCALE_SD = 0.02  # individual variation, log-normal, clipped at 2 SD

_STREAMS = {"sex": 1, "diagnosis": 2, "age": 3, "head": 4, "warp": 5, "rates": 6, "onset": 7,
            "contrast": 8, "bias": 9, "noise": 10, "skull": 11}


def rng(seed, stream, *extra):
    """The random generator of one property of a subject (``extra`` e.g. the age for noise)."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), _STREAMS[stream], *extra]))


@dataclass(frozen=True)
class Subject:
    seed: int
    sex: str
    diagnosis: str
    baseline_age: float

    def __post_init__(self):
        if int(self.seed) != self.seed or self.seed < 0:
            raise InputError(f"subject seed must be a non-negative integer, not {self.seed!r}")
        if self.sex not in SEXES:
            raise InputError(f"sex must be one of {SEXES}, not {self.sex!r}")
        if self.diagnosis not in DIAGNOSES:
            raise InputError(f"diagnosis must be one of {DIAGNOSES}, not {self.diagnosis!r}")
        check_age(self.baseline_age)

    @property
    def participant_id(self):
        return f"{int(self.seed):07d}"

    @property
    def head_scale(self):
        """Linear size relative to the MNI152 template."""
        individual = float(np.clip(rng(self.seed, "head").normal(), -2.0, 2.0)) * HEAD_SCALE_SD
        return MEAN_HEAD_SCALE * SEX_SCALE[self.sex] * float(np.exp(individual))

    @property
    def rates(self):
        """This subject's configured atrophy rates in %/yr (after disease onset), see aging.py."""
        from SynthMedLib.cohort.aging import subject_rates

        return subject_rates(self)


def check_age(age):
    age = float(age)
    if not np.isfinite(age) or not AGE_RANGE[0] <= age <= AGE_RANGE[1]:
        raise InputError(f"age {age} is outside the simulated range {AGE_RANGE[0]:g}-{AGE_RANGE[1]:g}")
    return age


# Baseline ages and diagnosis mix of a memory-clinic-like cohort (ADNI-like proportions).
_BASELINE_AGES = {"CN": (55.0, 90.0), "MCI": (58.0, 90.0), "AD": (60.0, 90.0)}
_MIX = {"CN": 0.4, "MCI": 0.3, "AD": 0.3}


def subject_from_seed(seed, diagnosis="mixed"):
    """The subject a seed stands for; ``diagnosis`` forces one group instead of the mix."""
    if diagnosis == "mixed":
        diagnosis = str(rng(seed, "diagnosis").choice(list(_MIX), p=list(_MIX.values())))
    elif diagnosis not in DIAGNOSES:
        raise InputError(f"diagnosis must be one of {DIAGNOSES} or 'mixed', not {diagnosis!r}")
    sex = SEXES[int(rng(seed, "sex").integers(2))]
    low, high = _BASELINE_AGES[diagnosis]
    age = round(float(rng(seed, "age").uniform(low, high)), 1)
    return Subject(seed=int(seed), sex=sex, diagnosis=diagnosis, baseline_age=age)


def population(n, seed=0, diagnosis="mixed"):
    """``n`` subjects with seeds ``seed, seed+1, ...``; seeds >= HELD_OUT_SEED are held out."""
    if int(n) < 1:
        raise InputError(f"a population needs at least one subject, not {n}")
    if int(seed) < 0:
        raise InputError(f"population seed must be non-negative, not {seed}")
    return [subject_from_seed(int(seed) + i, diagnosis) for i in range(int(n))]
