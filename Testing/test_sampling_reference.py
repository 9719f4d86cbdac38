"""Every shipped sampler and the generate / counterfactual / progression pipelines give exactly
the outputs they gave before the samplers became objects (sampling_reference.py made the
fixture from that code; see its docstring for what is covered).

Exactly, that is, on the kind of CPU the fixture was made on. Another vector unit sums the
convolutions in other orders (an AVX2-only AMD EPYC against the AVX-512 fixture: latents within
5.3e-5 of values up to 4.5, decoded images within 5.2e-6, label maps equal), so there every float
tensor is held to 1e-4 (two of the fixture's samplers differ by 2.7e-3 at the least: rflow's Euler
and DPM++2M), and the whole-image sha256 digests, which no tolerance can read, give way to their
crops."""

import pytest
import torch

from sampling_reference import FIXTURE, compute

# torch.backends.cpu.get_cpu_capability() where the fixture was made: bit-identical on every CI
# machine of that kind, not bit-identical on an AVX2 one.
FIXTURE_CPU_CAPABILITY = "AVX512"
EXACT = torch.backends.cpu.get_cpu_capability() == FIXTURE_CPU_CAPABILITY


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
            if EXACT:
                assert got == expected, name
            continue
        assert got.dtype == expected.dtype, name
        same = (torch.equal(got, expected) if EXACT or not expected.is_floating_point()
                else torch.allclose(got, expected, rtol=1e-4, atol=1e-4))
        assert same, f"{name}: max difference {(got.double() - expected.double()).abs().max():.3g}"
