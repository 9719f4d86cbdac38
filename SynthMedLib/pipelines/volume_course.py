"""An auxiliary volume model for progression: how each tissue volume changes per year, by
diagnosis. For the demo model, fitted to simulated-cohort trajectories of *training* subjects
(seeds below HELD_OUT_SEED); BrLP's own auxiliary models (Leaspy logistic disease-course models,
described in its card) are not reimplemented here.

The model is log-linear, ``V(t + years) = V(t) * exp(rate[diagnosis][volume] * years)``, fitted by
least squares on within-subject log-volume changes (each subject is its own baseline, so head size
and anatomy drop out). It is deliberately simple: its job is to give expected volumes that a
volume-conditioned model can be asked for, and a reference the predictions can be compared to.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from SynthMedLib.errors import InputError


@dataclass
class VolumeCourse:
    rates: dict                      # diagnosis -> {volume name: log-rate per year}
    name: str = "volume-course"
    fitted_on: dict = field(default_factory=dict)

    def factors(self, diagnosis: str, years: float) -> dict[str, float]:
        if diagnosis not in self.rates:
            raise InputError(f"the volume course knows diagnoses {sorted(self.rates)}, "
                             f"not {diagnosis!r}")
        return {k: math.exp(rate * float(years)) for k, rate in self.rates[diagnosis].items()}

    def predict(self, conditions: Mapping, years: Iterable[float],
                baseline_volumes: Mapping[str, float] | None = None) -> list[dict[str, float]]:
        """[{volume: expected value}] per follow-up; volumes the conditions carry (by name) or
        ``baseline_volumes`` give the starting values."""
        start = dict(baseline_volumes or {})
        start.update({k: float(v) for k, v in conditions.items() if k in self._names()})
        out = []
        for y in years:
            factors = self.factors(conditions["diagnosis"], y)
            out.append({k: start[k] * f for k, f in factors.items() if k in start})
        return out

    def _names(self):
        return {name for rates in self.rates.values() for name in rates}

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps({"name": self.name, "kind": "log-linear",
                                          "rates": self.rates, "fitted_on": self.fitted_on},
                                         indent=1))

    @classmethod
    def load(cls, path: str | Path) -> VolumeCourse:
        try:
            data = json.loads(Path(path).read_text())
            return cls(data["rates"], data.get("name", Path(path).stem), data.get("fitted_on", {}))
        except (OSError, ValueError, KeyError) as error:
            raise InputError(f"cannot read the volume course {path}: {error}") from None


MODEL_OWN = "card"  # volume_course= value meaning "the course the model's card ships, if any"


def shipped_course_entry(card) -> dict | None:
    """The card's ``auxiliary.volume_course`` entry ({"file": ...}), or None."""
    return (card.get("auxiliary") or {}).get("volume_course")


def card_volume_course(card) -> VolumeCourse | None:
    """The volume course a card ships (``auxiliary.volume_course.file`` beside the card), or None
    when it ships none."""
    entry = shipped_course_entry(card)
    if not entry:
        return None
    if card.directory is None:
        raise InputError(f"model '{card['id']}' names a volume course but has no folder to read it from")
    return VolumeCourse.load(Path(card.directory) / entry["file"])


def resolve_volume_course(card, volume_course: VolumeCourse | str | None) -> VolumeCourse | None:
    """What the pipelines' ``volume_course`` argument means: ``"card"`` the card's own course
    (None when it ships none), None no course (the model alone), or a VolumeCourse as given."""
    if isinstance(volume_course, str):
        if volume_course != MODEL_OWN:
            raise InputError(f"volume_course must be {MODEL_OWN!r}, None or a VolumeCourse, "
                             f"not {volume_course!r}")
        return card_volume_course(card)
    return volume_course


def chosen_volume_course(path: str | Path | None = None, off: bool = False) -> VolumeCourse | str | None:
    """The pipelines' ``volume_course`` for what a user chose (command line or Slicer): ``off``
    the model alone (None), a course file's ``path``, else the course the model ships."""
    if off:
        return None
    return VolumeCourse.load(path) if path else MODEL_OWN


def fit_volume_course(records: Iterable[tuple], name: str = "volume-course") -> VolumeCourse:
    """``records``: [(subject_id, diagnosis, age, {volume: ml})], two or more ages per subject."""
    by_subject = {}
    for subject, diagnosis, age, volumes in records:
        by_subject.setdefault(subject, (diagnosis, []))[1].append((float(age), volumes))
    changes = {}
    for diagnosis, visits in by_subject.values():
        visits.sort(key=lambda v: v[0])
        first_age, first = visits[0]
        for age, volumes in visits[1:]:
            for key, value in volumes.items():
                if first.get(key, 0) > 0 and value > 0:
                    changes.setdefault(diagnosis, {}).setdefault(key, []).append(
                        (age - first_age, math.log(value / first[key])))
    rates = {}
    for diagnosis, per_volume in changes.items():
        rates[diagnosis] = {}
        for key, pairs in per_volume.items():
            years, logs = np.array(pairs).T
            # Through the origin: no change after zero years.
            rates[diagnosis][key] = float((years @ logs) / (years @ years))
    return VolumeCourse(rates, name, {"subjects": len(by_subject), "visits": len(records)})
