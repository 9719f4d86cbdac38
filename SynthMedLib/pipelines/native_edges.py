"""Which native voxels sample outside the input's buffer on the torch way back
(native_warp.py): they take the background, as SimpleITK's Resample gives them."""

import math

import numpy as np
import torch
import torch.nn.functional as F


def half(size):
    """Per axis, half the index extent: normalised coordinate = index / half - 1."""
    return np.array([max(int(n) - 1, 1) / 2.0 for n in size])


class Edges:
    """Which voxels of the box sample outside the input's buffer [-0.5, size - 0.5) (they take the
    background, as SimpleITK's Resample gives them). Only bands of voxels near an edge can (the
    coarse offsets bound every offset: linear interpolation stays within their range), so only
    those are tested, one axis at a time; where the interpolated point lies within EDGE_BAND of the
    edge, the exact offset decides (the interpolation's error must not flip a voxel)."""

    EDGE_BAND = 0.25

    def __init__(self, warp, coarse, offsets, to_model, model_size, box, background):
        self.warp, self.offsets, self.to_model, self.model_size = warp, offsets, to_model, model_size
        self.first, self.background = box[0], background
        self.bands = []     # (axis, native first, native last) of the box slices to test
        for axis in range(3):
            low, high = float(coarse["offsets"][:, axis].min()), float(coarse["offsets"][:, axis].max())
            n, a, b = warp.size[axis], int(box[0][axis]), int(box[1][axis])
            below = min(b, math.floor(-0.5 + self.EDGE_BAND - low))
            above = max(a, math.ceil(n - 0.5 - self.EDGE_BAND - high))
            if below >= a:
                self.bands.append((axis, a, below))
            if above <= b and (below < a or above > below):
                self.bands.append((axis, above, b))

    def masks(self, start, grid, dz, floor, rows_back):
        """[(part of the slab, (targets, ...) bool)]: where each target's points of the slab
        (grid (targets, d, by, bx, 2), dz and floor (targets, d, by, bx)) leave the input."""
        found = []
        depth = dz.shape[1]
        for axis, a, b in self.bands:
            if axis == 2:
                a, b = max(a, start), min(b, start + depth - 1)
                if a > b:
                    continue
                part = (slice(a - start, b - start + 1), slice(None), slice(None))
                index = dz[(slice(None), *part)] + torch.arange(a, b + 1, device=dz.device,
                                                                dtype=dz.dtype)[:, None, None]
            elif axis == 1:
                part = (slice(None), slice(a - self.first[1], b - self.first[1] + 1), slice(None))
                row_half, floor_low, rows, plane_step = rows_back
                index = ((grid[..., 1][(slice(None), *part)] - floor[(slice(None), *part)] * plane_step
                          + 1.0) * row_half - 1.0 + floor_low * rows)
            else:
                part = (slice(None), slice(None), slice(a - self.first[0], b - self.first[0] + 1))
                index = (grid[..., 0][(slice(None), *part)] + 1.0) * half(self.warp.size)[0]
            n = self.warp.size[axis]
            outside = (index < -0.5) | (index >= n - 0.5)
            unsure = ((index + 0.5).abs() < self.EDGE_BAND) | ((index - (n - 0.5)).abs() < self.EDGE_BAND)
            if bool(unsure.any()):
                outside[unsure] = self._exact_outside(axis, start, part, unsure)
            if bool(outside.any()):
                found.append((part, outside))
        return found

    def _exact_outside(self, axis, start, part, unsure):
        """The exact test for the ``unsure`` (targets, ...) voxels of the slab's ``part``."""
        found = unsure.nonzero()                                # (k, 4) target, z, y, x in part
        offset = torch.tensor([start + (part[0].start or 0), self.first[1] + (part[1].start or 0),
                               self.first[0] + (part[2].start or 0)], dtype=torch.float64,
                              device=found.device)
        native = (found[:, 1:].to(torch.float64) + offset).flip(-1)   # (k, 3) x, y, z indices
        matrix = torch.as_tensor(self.to_model, device=found.device)
        model = native @ matrix[:3, :3].T + matrix[:3, 3]
        grid = model / torch.as_tensor(half(self.model_size), device=found.device) - 1.0
        exact = F.grid_sample(self.offsets[:, axis][None], grid[None, None, None], mode="bilinear",
                              padding_mode="border", align_corners=True)[0, :, 0, 0]   # (targets, k)
        index = native[:, axis] + exact[found[:, 0], torch.arange(len(found), device=found.device)]
        n = self.warp.size[axis]
        return (index < -0.5) | (index >= n - 0.5)
