"""A diffusion UNet traced with TorchScript for CPU sampling.

Why: a small model's step on a CPU is partly Python. MONAI's DiffusionModelUNet makes ~440 module
calls a forward; traced, they run as one graph: demo-brain's denoiser 42 instead of 54 ms a
step (two rows, two threads), the same numbers bit for bit (Testing/test_traced.py; the sampling
fixture, Testing/test_sampling_reference.py, runs through it too). Tracing costs about a second
once per network and process (and the first two traced calls are slower while TorchScript
profiles them). A GPU step is not Python-bound at the published sizes, so only CPU networks are
traced; a ControlNet's residuals, autocast, hooks on the network or anything that does not trace
keep the eager network.

One trace serves every batch size: the shapes are read from the inputs inside the graph
(checked against the eager network for one, two and five rows in the test).
"""

import warnings
import weakref

import torch

ENABLED = True
_TRACED = weakref.WeakKeyDictionary()   # network -> {kwargs names: traced module or None}


class _Call(torch.nn.Module):
    """network(x, timesteps=t, **kwargs) with the keyword tensors as positional inputs."""

    def __init__(self, network, names):
        super().__init__()
        self.network, self.names = network, names

    def forward(self, x, timesteps, *values):
        return self.network(x, timesteps=timesteps, **dict(zip(self.names, values)))


def forward(network, x, timesteps, kwargs):
    """``network(x, timesteps=timesteps, **kwargs)``, through its trace where there is one."""
    # hooks on the network (something watching its calls) would not run inside the trace
    hooked = bool(network._forward_hooks or network._forward_pre_hooks)
    if not ENABLED or hooked or x.device.type != "cpu" or network.training or not all(
            isinstance(v, torch.Tensor) for v in kwargs.values()):
        return network(x, timesteps=timesteps, **kwargs)
    names = tuple(sorted(kwargs))
    traces = _TRACED.setdefault(network, {})
    if names not in traces:
        traces[names] = _trace(network, names, x, timesteps, kwargs)
    traced = traces[names]
    if traced is None:
        return network(x, timesteps=timesteps, **kwargs)
    return traced(x, timesteps, *(kwargs[n] for n in names))


def _trace(network, names, x, timesteps, kwargs):
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")   # TracerWarnings about Python values in MONAI's code
            return torch.jit.trace(_Call(network, names).eval(), (x, timesteps, *(kwargs[n] for n in names)),
                                   check_trace=False)
    except Exception:  # a network that does not trace runs as it is
        return None
