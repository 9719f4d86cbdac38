"""Aging rates measured from rendered label maps match the configured atrophy model."""

import pytest

from SynthMedLib.cohort import Subject, render
from SynthMedLib.cohort.rates import brain_ml, measure_rates, rate_ages

# One subject per group; MCI and AD are rendered inside their disease window (rates.rate_ages).
SUBJECTS = {
    "CN": Subject(41, "M", "CN", 68.0),
    "MCI": Subject(42, "F", "MCI", 70.0),
    "AD": Subject(43, "M", "AD", 72.0),
}


@pytest.fixture(scope="module")
def measured():
    return {group: measure_rates(subject, rate_ages(subject, count=3), spacing=3.0)
            for group, subject in SUBJECTS.items()}


@pytest.mark.parametrize("group", list(SUBJECTS))
def test_measured_rates_are_within_25_percent_of_configured(measured, group):
    configured = SUBJECTS[group].rates
    for key in ("ventricles", "brain"):
        assert measured[group][key] == pytest.approx(configured[key], rel=0.25), key


@pytest.mark.parametrize("group", list(SUBJECTS))
def test_ventricles_grow_and_brain_shrinks_monotonically(measured, group):
    volumes = measured[group]["volumes"]
    ventricles = [v["ventricles_ml"] for v in volumes]
    brain = [brain_ml(v) for v in volumes]
    assert all(b > a for a, b in zip(ventricles, ventricles[1:]))
    assert all(b < a for a, b in zip(brain, brain[1:]))


def test_disease_is_faster_than_normal_aging(measured):
    for key in ("ventricles", "brain"):
        rates = [abs(measured[group][key]) for group in ("CN", "MCI", "AD")]
        assert rates[0] < rates[1] < rates[2], key
    assert abs(measured["AD"]["ventricles"]) > 1.8 * abs(measured["CN"]["ventricles"])


def test_literature_ranges_for_normal_aging(measured):
    assert 2.0 <= measured["CN"]["ventricles"] <= 4.0
    assert -0.5 <= measured["CN"]["brain"] <= -0.3


def test_same_subject_at_same_age_differs_only_by_diagnosis_after_onset():
    # Counterfactual ground truth: the AD version of a subject has larger ventricles.
    cn = render(Subject(44, "F", "CN", 75.0), 80.0).volumes
    ad = render(Subject(44, "F", "AD", 75.0), 80.0).volumes
    assert ad["ventricles_ml"] > 1.2 * cn["ventricles_ml"]
    assert brain_ml(ad) < brain_ml(cn)
