"""Group normalisation with whole-volume statistics while a decoder runs tile by tile.

Decoders normalise every layer with GroupNorm over the whole volume. Decoded tile by tile, each tile
would normalise with its own statistics and differ from the whole decode (by ~10-60% RMS for the
demo decoder architecture, Testing/test_decode.py). Memory stays bounded by the tile if the
statistics are gathered tile by tile, one norm layer at a time: norm k's input over the volume is
exact only once norms 0..k-1 use exact statistics, so pass k runs every tile only up to norm k
(earlier norms use the statistics already gathered), adds up norm k's input over the tile's core
(cores partition the volume), and stops that tile there. After one pass per norm layer, a final
pass decodes with every norm at its exact whole-volume statistics. The partial passes cost about
half a decode per norm layer, the price of exactness with bounded memory.

torch has no GroupNorm that takes external statistics, hence this small context manager.
"""

import contextlib

import torch


class StopTile(Exception):
    """Raised inside the decoder once the norm being measured has seen the tile."""


class VolumeGroupNorm:
    """While ``active()``, every ``nn.GroupNorm`` of ``network`` normalises with statistics set here."""

    def __init__(self, network):
        self.norms = [m for m in network.modules() if isinstance(m, torch.nn.GroupNorm)]
        self.order = []          # norms in the order the decoder calls them (learnt on first use)
        self.stats = {}          # id(norm) -> (mean, var) per group, whole volume
        self.measuring = None    # the norm whose statistics the current pass gathers
        self.sums = None
        self.core = None         # [(start, stop) fractions per spatial axis] of the tile's own part

    def learn_order(self, run, window):
        """One forward of a window to learn the order in which the decoder calls its norms."""
        self.order, self.measuring = [], None
        with self.active():
            run(window)
        return self.order

    def measure(self, norm):
        self.measuring, self.sums = norm, None

    def finish_measure(self):
        s, sq, n = self.sums
        mean = s / n
        self.stats[id(self.measuring)] = (mean, (sq / n - mean * mean).clamp_min(0.0))
        self.measuring, self.sums = None, None

    def _core_of(self, x):
        if self.core is None:
            return x
        box = tuple(slice(int(round(a * n)), int(round(b * n))) for (a, b), n in zip(self.core, x.shape[2:]))
        return x[(slice(None), slice(None)) + box]

    def _forward(self, norm, x):
        n, c = x.shape[:2]
        groups = norm.num_groups
        if norm not in self.order:
            self.order.append(norm)
        if norm is self.measuring:
            values = self._core_of(x).reshape(n, groups, -1).double()
            sums = (values.sum(-1), (values * values).sum(-1), values.shape[-1])
            self.sums = sums if self.sums is None else tuple(a + b for a, b in zip(self.sums, sums))
            raise StopTile()
        # In float32, as autocast runs GroupNorm in the whole decode: normalising in bf16 itself put
        # the tiled decode ~2.5% RMS away from the whole bf16 decode (bench/results/gpu).
        grouped = x.reshape(n, groups, -1).float()
        if id(norm) in self.stats:
            mean, var = self.stats[id(norm)]
        else:  # not measured: the tile's own statistics, as plain GroupNorm
            mean, var = grouped.double().mean(-1), grouped.double().var(-1, unbiased=False)
        shape = (n, groups, 1)
        normed = (grouped - mean.float().view(shape)) * torch.rsqrt(var.float().view(shape) + norm.eps)
        normed = normed.reshape(x.shape)
        if norm.affine:
            view = (1, c) + (1,) * (x.ndim - 2)
            normed = normed * norm.weight.view(view).float() + norm.bias.view(view).float()
        return normed

    @contextlib.contextmanager
    def active(self):
        originals = {}
        for norm in self.norms:
            originals[norm] = norm.forward
            norm.forward = (lambda module: lambda x: self._forward(module, x))(norm)
        try:
            yield self
        finally:
            for norm, forward in originals.items():
                norm.forward = forward
