"""The volume course's scaled change on torch tensors alone: the velocity ``base + scale * near``
integrated by scaling and squaring, and the voxels of a structure it moves.

identity.py builds these from SimpleITK fields (``_ScaledChange``, ``_MovedVolume``) and says why
the change is integrated rather than multiplied. Nothing here imports SimpleITK, so the lent GPU
machines (which lack it) run the same code (bench/interactive_latency_gpu.py).
"""

import math
import warnings

import torch
from monai.networks.blocks import DVF2DDF, Warp


class ScaledChange:
    """``base + scale * near`` (each (1, 3, z, y, x), voxels along the array axes) integrated by
    scaling and squaring (MONAI's DVF2DDF), for any scale."""

    def __init__(self, base: torch.Tensor, near: torch.Tensor, squarings: int = 6):
        self.base, self.near = base, near
        # the largest displacement of each part, in voxels (torch.norm over dim 1 is ~100x slower)
        self.sizes = [float(part.square().sum(1).amax()) ** 0.5 for part in (base, near)]
        with warnings.catch_warnings():  # MONAI says it uses torch's grid_sample: that is intended
            warnings.filterwarnings("ignore", message=".*native grid_sample")
            self.integrate = DVF2DDF(num_steps=squarings, mode="bilinear", padding_mode="zeros")

    @torch.no_grad()
    def voxels(self, scale: float, region=(slice(None),) * 5) -> torch.Tensor:
        """The integrated change (1, 3, z, y, x) in voxels, over ``region`` of the grid."""
        return self.integrate(self.base[region] + float(scale) * self.near[region])


class MovedVolume:
    """``count(scale)``: the voxels of ``structure`` (a (z, y, x) boolean mask) moved by
    ``change`` (a ScaledChange) at ``scale``, the mask moved in torch by nearest neighbour.

    Only a box around the structure is integrated: a voxel that ends inside the structure starts,
    and travels, within the velocity's largest size of it, so the box grown by that (and the
    interpolation's reach) counts exactly what the whole grid would (Testing/test_counterfactual_
    identity.py compares the two) in about a third of the grid at the demo model's scales."""

    def __init__(self, structure: torch.Tensor, change: ScaledChange, whole_grid: bool = False):
        self.change = change
        self.structure = structure.float()[None, None]
        where = structure.nonzero()
        self.box = (None if whole_grid or not len(where)
                    else (where.amin(0).tolist(), (where.amax(0) + 1).tolist()))
        with warnings.catch_warnings():  # MONAI says it uses torch's grid_sample: that is intended
            warnings.filterwarnings("ignore", message=".*native grid_sample")
            self.move = Warp(mode="nearest", padding_mode="zeros")

    def _region(self, scale):
        if self.box is None:
            return (slice(None),) * 5
        base, near = self.change.sizes
        reach = int(math.ceil(base + abs(float(scale)) * near)) + 2
        low, high = self.box
        return (slice(None), slice(None)) + tuple(
            slice(max(0, a - reach), min(n, b + reach)) for a, b, n in zip(low, high, self.structure.shape[2:]))

    @torch.no_grad()
    def __call__(self, scale: float) -> int:
        region = self._region(scale)
        moved = self.move(self.structure[region], self.change.voxels(scale, region))
        return int((moved > 0.5).sum())
