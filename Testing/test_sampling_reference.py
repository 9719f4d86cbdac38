"""Every shipped sampler and the generate / counterfactual / progression pipelines give exactly
the outputs they gave before the samplers became objects (sampling_reference.py made the
fixture from that code; see its docstring for what is covered)."""

import pytest
import torch

from sampling_reference import FIXTURE, compute


@pytest.fixture(scope="module")
def outputs():
    return compute()


@pytest.fixture(scope="module")
def reference():
    return torch.load(FIXTURE, weights_only=True)["outputs"]


def test_the_same_entries_are_computed(outputs, reference):
    assert sorted(outputs) == sorted(reference)


@pytest.mark.parametrize("prefix", ["demo/", "generate-", "ddpm/", "rflow/", "counterfactual/",
                                    "progression/"])
def test_bit_identical_to_the_reference(outputs, reference, prefix):
    names = [n for n in reference if n.startswith(prefix)]
    assert names
    for name in names:
        expected, got = reference[name], outputs[name]
        if isinstance(expected, str):
            assert got == expected, name
        else:
            assert got.dtype == expected.dtype and torch.equal(got, expected), \
                f"{name}: max difference {(got.double() - expected.double()).abs().max():.3g}"
