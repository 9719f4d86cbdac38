"""The traced CPU UNet (sampling/traced.py) gives the eager network's numbers bit for bit, for
any batch size from one trace, and falls back to the eager network where it cannot trace."""

import torch

from pipeline_fixtures import tiny_model
from SynthMedLib.sampling import traced


def test_the_trace_gives_the_eager_numbers_for_every_batch_size():
    from SynthMedLib.pipelines.latent_io import condition_vectors
    from SynthMedLib.sampling.denoiser import Conditioning

    model = tiny_model()
    network, card = model.network("diffusion"), model.card
    traced._TRACED.pop(network, None)
    with torch.no_grad():
        for rows in (2, 1, 5):
            torch.manual_seed(rows)
            vectors = condition_vectors(card, [{"age": 60.0 + 5 * i, "sex": "F", "diagnosis": "CN"}
                                               for i in range(rows)])
            x, kwargs = Conditioning(vectors, card.conditioning.mode).network_inputs(
                torch.randn(rows, card.latent.channels, *card.latent.shape))
            t = torch.full((rows,), 400.0)
            eager = network(x, timesteps=t, **kwargs)
            assert torch.equal(traced.forward(network, x, t, kwargs), eager)
    assert len(traced._TRACED[network]) == 1            # one trace for all three batch sizes


def test_what_cannot_be_traced_runs_eagerly(monkeypatch):
    calls = []

    class Untraceable(torch.nn.Module):
        def forward(self, x, timesteps):
            calls.append(x.shape[0])
            if float(x.sum()) > 1e9:     # data-dependent Python: tracing would bake it in
                return x
            return x * 2

    network = Untraceable().eval()
    monkeypatch.setattr(torch.jit, "trace", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("no")))
    x = torch.ones(2, 1, 2, 2, 2)
    assert torch.equal(traced.forward(network, x, torch.zeros(2), {}), x * 2)
    assert traced._TRACED[network][()] is None and calls == [2]
    monkeypatch.setattr(traced, "ENABLED", False)
    traced.forward(network, x, torch.zeros(2), {})
    assert calls == [2, 2]
    monkeypatch.setattr(traced, "ENABLED", True)
    watched = Untraceable().eval()
    watched.register_forward_pre_hook(lambda module, inputs: calls.append("hook"))
    traced.forward(watched, x, torch.zeros(2), {})    # a hooked network is not traced
    assert calls[-2:] == ["hook", 2] and watched not in traced._TRACED
