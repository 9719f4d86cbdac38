"""Model-space displacement fields and label maps -> the input's own grid, for every target in one
pass (torch ``grid_sample``; on the GPU when the model is there).

A native point p moved by a model-space field u lands at T(T^-1(p) + u(T^-1(p))), T the
registration's affine (model -> native). With A its matrix that is p + A u(T^-1(p)): one
trilinear sample of the small field at the fixed points T^-1(p), one linear map, one sample of
the input. SimpleITK's Resample through a CompositeTransform (identity.warp_native) evaluates the
affine, its inverse and the field per voxel per target, single-threaded in practice on a shared
CPU: about a second per target on a 1 mm scan, versus a fraction here, and it cannot batch targets
or use a GPU. SimpleITK stays the reference: this module reproduces its conventions (linear
interpolation of the field with nearest-edge extrapolation outside the model grid, a voxel outside
the input's buffer [-0.5, size - 0.5) takes the background value, nearest neighbour for labels)
and Testing/test_native_warp.py checks the two agree.

The native grid is walked in slabs of z so that a 0.5 mm scan with several targets stays within a
few hundred MB.
"""

import numpy as np
import torch
import torch.nn.functional as F

# SimpleITK is imported where images come in and go out: the array core runs without it (the
# lent GPU machine has torch but no SimpleITK: bench/native_warp_gpu.py checks the core there).

# Sample points per slab (all targets together): ~100 MB of float32 coordinates.
SLAB_POINTS = 1 << 23


def _index_to_physical(size, spacing, origin, direction):
    """4x4: torch-normalised grid coordinates (x, y, z in [-1, 1], align_corners=True) -> LPS mm."""
    to_index = np.eye(4)
    for d in range(3):
        half = max(size[d] - 1, 1) / 2.0
        to_index[d, d], to_index[d, 3] = half, half
    to_physical = np.eye(4)
    to_physical[:3, :3] = np.reshape(direction, (3, 3)) * np.asarray(spacing)
    to_physical[:3, 3] = origin
    return to_physical @ to_index


def _affine(transform):
    """4x4 of a SimpleITK affine (model point -> native point)."""
    matrix = np.reshape(transform.GetMatrix(), (3, 3))
    center, translation = np.asarray(transform.GetCenter()), np.asarray(transform.GetTranslation())
    out = np.eye(4)
    out[:3, :3], out[:3, 3] = matrix, translation + center - matrix @ center
    return out


def _native_grid(mapping):
    size, spacing, origin, direction = mapping.native_grid
    return tuple(int(s) for s in size), spacing, origin, direction


class NativeWarp:
    """The fixed part of the way back for one scan: where each native voxel sits in model space."""

    def __init__(self, mapping, device="cpu"):
        grid = mapping.space.grid()
        native = _index_to_physical(*_native_grid(mapping))
        model = _index_to_physical(grid.GetSize(), grid.GetSpacing(), grid.GetOrigin(),
                                   grid.GetDirection())
        affine = _affine(mapping.transform)
        # native normalised -> model normalised coordinates; a physical displacement in model
        # space -> native normalised offset (p + A u)
        self._setup(np.linalg.inv(model) @ np.linalg.inv(affine) @ native,
                    np.linalg.inv(native)[:3, :3] @ affine[:3, :3], _native_grid(mapping)[0], device)
        self.mapping = mapping

    @classmethod
    def from_matrices(cls, native_to_model, displacement_to_offset, size, device="cpu"):
        """The array core alone (no SimpleITK): the two matrices ``__init__`` derives, and the
        native grid's size (x, y, z)."""
        warp = cls.__new__(cls)
        warp._setup(np.asarray(native_to_model, float), np.asarray(displacement_to_offset, float),
                    size, device)
        warp.mapping = None
        return warp

    def _setup(self, native_to_model, displacement_to_offset, size, device):
        self.native_to_model, self.displacement_to_offset = native_to_model, displacement_to_offset
        self.size, self.device = tuple(int(n) for n in size), torch.device(device)

    def _slabs(self, per_point):
        x, y, z = self.size
        depth = max(2, min(z, SLAB_POINTS // max(1, per_point * x * y)))
        starts = list(range(0, z, depth))
        if len(starts) > 1 and z - starts[-1] == 1:  # no one-plane slab (affine_grid's odd case)
            starts.pop()
        yield from zip(starts, starts[1:] + [z])

    def _coordinates(self, start, stop):
        """(1, stop - start, y, x, 3) native normalised coordinates of a z slab, and the same
        points in model space (torch's affine_grid: the slab's own [-1, 1] mapped into the
        whole grid's)."""
        x, y, z = self.size
        depth, half = stop - start, max(z - 1, 1) / 2.0
        slab = np.eye(4)   # slab-normalised z -> whole-grid normalised z
        slab[2, 2] = (depth - 1) / 2.0 / half
        slab[2, 3] = (start + (depth - 1) / 2.0) / half - 1.0
        shape = (1, 1, depth, y, x)

        def grid(matrix):
            theta = torch.as_tensor(matrix[:3], dtype=torch.float32, device=self.device)[None]
            return F.affine_grid(theta, shape, align_corners=True)

        return grid(slab), grid(self.native_to_model @ slab)

    def warp(self, native_input, fields=(), labels=()):
        """(images, label maps) on the native grid: ``native_input`` (SimpleITK) moved by each
        model-space displacement field of ``fields`` (SimpleITK vector images or (z, y, x, 3) mm
        arrays), and each model-space label array of ``labels`` (nearest neighbour)."""
        import SimpleITK as sitk

        fields = [f if isinstance(f, np.ndarray) else sitk.GetArrayViewFromImage(f) for f in fields]
        images, label_maps = self.warp_arrays(sitk.GetArrayViewFromImage(native_input), fields, labels)
        return [self._image(a) for a in images], [self._image(a) for a in label_maps]

    def warp_arrays(self, array, fields=(), labels=()):
        """The array core of ``warp``: ``array`` (z, y, x), fields (z, y, x, 3) in mm, labels
        (z, y, x) on the model grid -> (float32 images, uint8 label maps), each (targets, z, y, x)."""
        fields, labels = list(fields), list(labels)
        background = float(np.min(array))
        x, y, z = self.size
        image = torch.as_tensor(np.array(array, dtype=np.float32), device=self.device)[None, None]
        offsets = self._offsets(fields)
        label_stack = (torch.as_tensor(np.stack(labels).astype(np.float32), device=self.device)[None]
                       if labels else None)
        images = np.empty((len(fields), z, y, x), np.float32)
        label_out = np.empty((len(labels), z, y, x), np.uint8)
        size = torch.tensor([x, y, z], dtype=torch.float32, device=self.device)
        with torch.no_grad():
            for start, stop in self._slabs(1 + 2 * len(fields)):
                native, model = self._coordinates(start, stop)
                if label_stack is not None:
                    sampled = F.grid_sample(label_stack, model, mode="nearest", padding_mode="zeros",
                                            align_corners=True)
                    label_out[:, start:stop] = sampled[0].round().to(torch.uint8).cpu().numpy()
                if offsets is None:
                    continue
                moved = F.grid_sample(offsets, model, mode="bilinear", padding_mode="border",
                                      align_corners=True)[0]       # (3 * targets, z, y, x)
                moved = moved.reshape(len(fields), 3, *moved.shape[1:]).permute(0, 2, 3, 4, 1)
                points = native + moved                            # (targets, z, y, x, 3)
                values = F.grid_sample(image, points.reshape(1, -1, *points.shape[2:]),
                                       mode="bilinear", padding_mode="border", align_corners=True)
                values = values.reshape(points.shape[:-1])
                index = (points + 1.0) * 0.5 * (size - 1)
                outside = ((index < -0.5) | (index >= size - 0.5)).any(dim=-1)
                values = values.masked_fill(outside, background)
                images[:, start:stop] = values.cpu().numpy()
        return images, label_out

    def _offsets(self, fields):
        """(1, 3 * targets, z, y, x) model-grid fields ((z, y, x, 3) mm arrays) as native
        normalised offsets."""
        if not fields:
            return None
        arrays = np.stack(fields).astype(np.float64)
        offsets = arrays @ self.displacement_to_offset.T          # (targets, z, y, x, 3)
        offsets = np.moveaxis(offsets, -1, 1).reshape(-1, *arrays.shape[1:4])
        return torch.as_tensor(offsets.astype(np.float32), device=self.device)[None]

    def _image(self, array):
        import SimpleITK as sitk

        _, spacing, origin, direction = _native_grid(self.mapping)
        image = sitk.GetImageFromArray(array)
        image.SetSpacing(spacing)
        image.SetOrigin(origin)
        image.SetDirection(direction)
        return image
