"""Model-space displacement fields and label maps -> the input's own grid, for every target in one
pass (torch; on the GPU when the model is there, on the CPU otherwise).

A native point p moved by a model-space field u lands at T(T^-1(p) + u(T^-1(p))), T the
registration's affine (model -> native). With A its matrix that is p + A u(T^-1(p)): a native
voxel samples the input at its own index plus a small offset, smooth because u is (demons fields
are Gaussian-smoothed on the 3 mm model grid). SimpleITK's Resample through a CompositeTransform
(identity.warp_native) stays the reference, and this module reproduces its conventions: linear
interpolation of the field, clamped to the edge voxel within half a voxel of the model grid and
zero beyond (ITK's DisplacementFieldTransform: such a voxel keeps the input's value); linear
interpolation of the input, a point outside its buffer [-0.5, size - 0.5) takes the background
(the input's minimum); nearest neighbour for labels. Testing/test_native_warp.py checks the two
agree.

Why not one grid_sample of the field and one of the input per voxel (the first version): torch's
3-D grid_sample is not vectorised on a CPU (~30 ns a point, slower than SimpleITK), its 2-D one
is (~5 ns). So, per target (bench/results/native_warp_cpu.md has the measurements):
- the offsets are evaluated exactly only on a coarse native sub-grid (every COARSE_STEP_MM,
  the box's last voxel included) and interpolated linearly in between (the error comes from the
  field's curvature and from the kinks of its linear interpolation at every model voxel: at most
  ~0.02 voxel on demons fields at 1 mm, measured there; where it could decide whether a point
  falls outside the input, the exact offset decides: native_edges.py);
- the input is sampled with 2-D bilinear grid_sample on a view of its planes two at a time (two
  channels: plane k and k + 1), blended in z: trilinear interpolation, vectorised;
- only the box of native voxels whose model point lies where some target's offset reaches
  NEGLIGIBLE_VOXELS (dilated by the field's interpolation support, inside the model grid) is
  computed; every other voxel keeps the input's value exactly.
"""

import math

import numpy as np
import torch
import torch.nn.functional as F

from SynthMedLib.pipelines.native_edges import Edges, half

# SimpleITK is imported where images come in and go out: the array core runs without it (the
# lent GPU machine has torch but no SimpleITK: bench/native_warp_gpu.py checks the core there).

# Label sample points per slab (all label maps together): ~100 MB of float32 coordinates.
SLAB_POINTS = 1 << 23
# Image sample points per slab (all targets together): ~10 MB of coordinates, as fast as larger
# slabs on one CPU thread (measured 2^17 .. 2^21).
IMAGE_SLAB_POINTS = 1 << 19
# Spacing of the sub-grid on which the offsets are evaluated exactly (mm, native voxels: at least
# 1): bench/native_warp_cpu.py's accuracy/time curve.
COARSE_STEP_MM = 4.0
# An offset below this (native voxels, every target) counts as no movement.
NEGLIGIBLE_VOXELS = 1e-3


_half = half


def _index_from_normalised(size):
    """4x4: torch-normalised coordinates (x, y, z in [-1, 1], align_corners=True) -> indices."""
    out = np.eye(4)
    out[:3, :3], out[:3, 3] = np.diag(_half(size)), _half(size)
    return out


def _index_to_physical(size, spacing, origin, direction):
    """4x4: torch-normalised grid coordinates (x, y, z in [-1, 1], align_corners=True) -> LPS mm."""
    to_physical = np.eye(4)
    to_physical[:3, :3] = np.reshape(direction, (3, 3)) * np.asarray(spacing)
    to_physical[:3, 3] = origin
    return to_physical @ _index_from_normalised(size)


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


def _interpolation_matrix(positions, length):
    """(length, len(positions)) float64: linear interpolation from samples at the increasing
    ``positions`` (the first 0, the last length - 1) to every index 0 .. length - 1."""
    index = np.arange(length, dtype=float)
    matrix = np.zeros((length, len(positions)))
    if len(positions) == 1:
        matrix[:, 0] = 1.0
        return matrix
    right = np.clip(np.searchsorted(positions, index, side="right"), 1, len(positions) - 1)
    weight = (index - positions[right - 1]) / (positions[right] - positions[right - 1])
    matrix[np.arange(length), right - 1] = 1.0 - weight
    matrix[np.arange(length), right] = weight
    return matrix


def _coarse_positions(length, step):
    """Sub-grid indices 0, step, 2 step, ..., and always the last index."""
    return np.unique(np.append(np.arange(0, length, step), length - 1)).astype(float)


def _groups(intervals, planes):
    """Consecutive intervals gathered into slabs of about ``planes`` planes (at least one)."""
    group = []
    for interval in intervals:
        if group and interval[3] - group[0][2] > planes:
            yield group
            group = []
        group.append(interval)
    if group:
        yield group


def _key(region):
    return tuple(np.concatenate(region).tolist())


def _outside_box(image, targets, box):
    """(targets, z, y, x): the input's values outside ``box``, the box left to be filled."""
    (x0, y0, z0), (x1, y1, z1) = box
    out = torch.empty((targets, *image.shape), dtype=image.dtype, device=image.device)
    out[:, :z0], out[:, z1 + 1:] = image[:z0], image[z1 + 1:]
    inner = (slice(None), slice(z0, z1 + 1))
    out[(*inner, slice(None, y0))] = image[z0:z1 + 1, :y0]
    out[(*inner, slice(y1 + 1, None))] = image[z0:z1 + 1, y1 + 1:]
    inner = (*inner, slice(y0, y1 + 1))
    out[(*inner, slice(None, x0))] = image[z0:z1 + 1, y0:y1 + 1, :x0]
    out[(*inner, slice(x1 + 1, None))] = image[z0:z1 + 1, y0:y1 + 1, x1 + 1:]
    return out


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
                    np.linalg.inv(native)[:3, :3] @ affine[:3, :3], _native_grid(mapping)[0], device,
                    min(mapping.native_grid[1]))
        self.mapping = mapping

    @classmethod
    def from_matrices(cls, native_to_model, displacement_to_offset, size, device="cpu", spacing=1.0):
        """The array core alone (no SimpleITK): the two matrices ``__init__`` derives, the native
        grid's size (x, y, z) and its spacing (mm, for COARSE_STEP_MM)."""
        warp = cls.__new__(cls)
        warp._setup(np.asarray(native_to_model, float), np.asarray(displacement_to_offset, float),
                    size, device, spacing)
        warp.mapping = None
        return warp

    def _setup(self, native_to_model, displacement_to_offset, size, device, spacing):
        self.native_to_model, self.displacement_to_offset = native_to_model, displacement_to_offset
        self.size, self.device = tuple(int(n) for n in size), torch.device(device)
        self.coarse_step = max(1, int(round(COARSE_STEP_MM / float(spacing))))

    def warp(self, native_input, fields=(), labels=()):
        """(images, label maps) on the native grid: ``native_input`` (SimpleITK) moved by each
        model-space displacement field of ``fields`` (SimpleITK vector images or (z, y, x, 3) mm
        arrays), and each model-space label array of ``labels`` (nearest neighbour)."""
        import SimpleITK as sitk

        # copies, not views: a view does not keep its image alive, and an image only the caller's
        # argument list held is freed once that list is (a zero field read as garbage)
        arrays = [f if isinstance(f, np.ndarray) else sitk.GetArrayFromImage(f) for f in fields]
        images, label_maps = self.warp_arrays(sitk.GetArrayViewFromImage(native_input), arrays, labels)
        return [self._image(a) for a in images], [self._image(a) for a in label_maps]

    def warp_arrays(self, array, fields=(), labels=()):
        """The array core of ``warp``: ``array`` (z, y, x), fields (z, y, x, 3) in mm, labels
        (z, y, x) on the model grid -> (float32 images, uint8 label maps), each (targets, z, y, x)."""
        with torch.no_grad():
            return self.warp_images(array, list(fields)), self.warp_labels(list(labels))

    # -- images -------------------------------------------------------------------------------

    def warp_images(self, array, fields):
        """(targets, z, y, x) float32: ``array`` moved by each field (see the module docstring)."""
        x, y, z = self.size
        image = torch.as_tensor(np.array(array, dtype=np.float32), device=self.device)
        if not fields:
            return np.empty((0, z, y, x), np.float32)
        model_size = fields[0].shape[2::-1]
        to_model = _index_from_normalised(model_size) @ self.native_to_model @ np.linalg.inv(
            _index_from_normalised(self.size))                        # native index -> model index
        # model-grid displacements (mm) as native index offsets, (targets, 3 (x, y, z), mz, my, mx)
        to_offset = np.diag(_half(self.size)) @ self.displacement_to_offset
        offsets = torch.as_tensor(np.stack(fields).astype(np.float64) @ to_offset.T,
                                  device=self.device).permute(0, 4, 1, 2, 3)
        regions = [self._moving_region(offsets[t], model_size) for t in range(len(fields))]
        boxes = [self._box(to_model, *region) for region in regions if region is not None]
        boxes = [b for b in boxes if b is not None]
        box = (np.min([b[0] for b in boxes], axis=0), np.max([b[1] for b in boxes], axis=0)) if boxes else None
        if box is None:
            return image.expand(len(fields), z, y, x).cpu().numpy().copy()
        out = _outside_box(image, len(fields), box)
        coarse = self._coarse(offsets, to_model, box, model_size)
        self._fill(out, image, coarse, offsets, to_model, box, regions, model_size)
        return out.cpu().numpy()

    def _moving_region(self, offsets, model_size):
        """(low, high) model indices (x, y, z) of the box where a target's ``offsets`` (3, mz, my,
        mx) move a voxel by NEGLIGIBLE_VOXELS or more, widened by the field's linear-interpolation
        support (one voxel) and cut to where ITK interpolates the field at all ([-0.5, size -
        0.5)); None: nowhere. Outside it the target keeps the input's values, bit for bit."""
        # squared: torch.norm over the first dim is ~100x slower on a CPU
        moving = offsets.square().sum(0) >= NEGLIGIBLE_VOXELS ** 2          # (mz, my, mx)
        if not bool(moving.any()):
            return None
        low, high = [], []
        for axis, dim in enumerate((2, 1, 0)):   # x, y, z
            present = moving.any(dim=tuple(d for d in range(3) if d != dim)).nonzero()[:, 0]
            low.append(max(float(present[0]) - 1.0, -0.5))
            high.append(min(float(present[-1]) + 1.0, model_size[axis] - 0.5))
        return np.array(low), np.array(high)

    def _box(self, to_model, low, high):
        """Per axis (x, y, z) the first and last native index whose point can fall in the region;
        None when none does."""
        corners = np.array([[c[0], c[1], c[2], 1.0] for c in np.stack(np.meshgrid(
            *zip(low, high), indexing="ij"), -1).reshape(-1, 3)])
        native = (np.linalg.inv(to_model) @ corners.T)[:3]
        first = np.maximum(np.floor(native.min(axis=1)), 0).astype(int)
        last = np.minimum(np.ceil(native.max(axis=1)), np.array(self.size) - 1).astype(int)
        if (first > last).any():
            return None
        # widened to the sub-grid's points (multiples of the step, and the grid's last index): a
        # voxel's offsets then come from the same points whatever the other targets' fields
        step = self.coarse_step
        return first // step * step, np.minimum(-(-last // step) * step, np.array(self.size) - 1)

    def _coarse(self, offsets, to_model, box, model_size):
        """The exact offsets on the sub-grid of the box, per target: a dict of
        positions (per axis, in box indices) and values (targets, 3 (x, y, z), cz, cy, cx)."""
        first, last = box
        positions = [_coarse_positions(int(b - a) + 1, self.coarse_step) for a, b in zip(first, last)]
        native = np.stack(np.meshgrid(*[p + a for p, a in zip(positions[::-1], first[::-1])],
                                      indexing="ij")[::-1], -1)      # (cz, cy, cx, 3 (x, y, z))
        model = native @ to_model[:3, :3].T + to_model[:3, 3]
        grid = torch.as_tensor(model / _half(model_size) - 1.0, device=self.device)[None]
        values = F.grid_sample(offsets.reshape(1, -1, *offsets.shape[2:]), grid, mode="bilinear",
                               padding_mode="border", align_corners=True)[0]
        values = values.reshape(offsets.shape[0], 3, *grid.shape[1:4])
        absolute = values + torch.as_tensor(np.moveaxis(native, -1, 0), device=self.device)
        return {"positions": positions, "offsets": values, "absolute": absolute}

    def _fill(self, out, image, coarse, offsets, to_model, box, regions, model_size):
        """Write the moved box of every target into ``out`` (targets, z, y, x)."""
        x, y, z = self.size
        (x0, y0, z0), (x1, y1, z1) = box
        absolute, dz = coarse["absolute"], coarse["offsets"][:, 2]
        floor_low, floor_high = math.floor(float(dz.min())), math.floor(float(dz.max()))
        # The input seen two planes at a time: planes and rows padded by replication (linear
        # interpolation's edge clamping), then for output plane n a view of the padded planes
        # from n + pad + floor_low on, channel 1 the same one plane further.
        pad = max(1, -floor_low, floor_high + 1)
        padded = F.pad(image[None, None], (0, 0, 1, 1, pad, pad), mode="replicate")[0, 0]
        rows = y + 2
        height = (floor_high - floor_low + 1) * rows
        row_half = max(height - 1, 1) / 2.0
        plane_step = rows / row_half       # a plane further down the 2-D grid's rows
        # per coarse point: the 2-D grid (x, row without the plane term), the z offset
        coarse_values = torch.stack([absolute[:, 0] / _half(self.size)[0] - 1.0,
                                     (absolute[:, 1] + 1.0 - floor_low * rows) / row_half - 1.0,
                                     dz], dim=-1).to(torch.float32)   # (targets, cz, cy, cx, 3)
        wy = torch.as_tensor(_interpolation_matrix(coarse["positions"][1], y1 - y0 + 1),
                             dtype=torch.float32, device=self.device)
        wx = torch.as_tensor(_interpolation_matrix(coarse["positions"][0], x1 - x0 + 1),
                             dtype=torch.float32, device=self.device)

        def plane(j):   # coarse plane j on the box's (y, x) grid: (targets, by, bx, 3)
            return torch.einsum("yc,tcdk,xd->tyxk", wy, coarse_values[:, j], wx)

        edges = Edges(self, coarse, offsets, to_model, model_size, box, float(image.min()))
        pz = coarse["positions"][2].astype(int) + z0
        # intervals between coarse planes (j, k): planes start .. stop - 1, the last one closed
        intervals = [(0, 0, pz[0], pz[0] + 1)] if len(pz) == 1 else [
            (j, j + 1, pz[j], pz[j + 1] + (j == len(pz) - 2)) for j in range(len(pz) - 1)]
        planes = {}

        def coarse_plane(j):   # computed once, kept while the next slab may need it
            if j not in planes:
                planes[j] = plane(j)
            return planes[j]

        rows_of = {_key(r): self._row_intervals(to_model, r, box) for r in regions if r is not None}
        per_plane = len(regions) * (y1 - y0 + 1) * (x1 - x0 + 1)
        for group in _groups(intervals, max(1, IMAGE_SLAB_POINTS // per_plane)):
            start, stop = group[0][2], group[-1][3]
            grid = torch.empty((len(regions), stop - start, y1 - y0 + 1, x1 - x0 + 1, 2), device=self.device)
            dz_full = torch.empty(grid.shape[:-1], device=self.device)
            for j, k, a, b in group:   # linear in z between the coarse planes j and k
                below, above = coarse_plane(j), coarse_plane(k)
                weight = torch.as_tensor((np.arange(a, b) - pz[j]) / max(pz[k] - pz[j], 1), dtype=torch.float32,
                                         device=self.device)[None, :, None, None, None]
                torch.lerp(below[:, None, ..., :2], above[:, None, ..., :2], weight, out=grid[:, a - start:b - start])
                torch.lerp(below[:, None, ..., 2], above[:, None, ..., 2], weight[..., 0],
                           out=dz_full[:, a - start:b - start])
            for j in [j for j in planes if j < group[-1][1]]:
                del planes[j]
            floor = torch.floor(dz_full)                          # (targets, d, by, bx)
            fraction = dz_full - floor
            grid[..., 1].add_(floor, alpha=plane_step)            # (targets, d, by, bx, 2)
            # per moving region: which voxels of the slab it holds (None: all)
            keeps = {key: self._region_mask(first, last, start - z0, stop - z0, box)
                     for key, (first, last) in rows_of.items()}
            source = image[start:stop, y0:y1 + 1, x0:x1 + 1]
            view = padded.as_strided((stop - start, 2, height, x), (rows * x, rows * x, x, 1),
                                     (start + pad + floor_low) * rows * x)
            outside = edges.masks(start, grid, dz_full, floor, (row_half, floor_low, rows, plane_step))
            for t, region in enumerate(regions):
                target = out[t, start:stop, y0:y1 + 1, x0:x1 + 1]
                if region is None:     # this field moves nothing
                    target.copy_(source)
                    continue
                keep = keeps[_key(region)]
                sampled = F.grid_sample(view, grid[t], mode="bilinear", padding_mode="border",
                                        align_corners=True)
                moved = torch.lerp(sampled[:, 0], sampled[:, 1], fraction[t],
                                   out=target if keep is None else None)
                for part, mask in outside:
                    moved[part].masked_fill_(mask[t], edges.background)
                if keep is not None:
                    torch.where(keep, moved, source, out=target)
        return out

    def _row_intervals(self, to_model, region, box):
        """Per row (z, y) of the box, the first and last x whose model point lies in ``region``:
        the model point is linear in x along a row, so the region is an interval of x."""
        (x0, y0, z0), (x1, y1, z1) = box
        low, high = region
        zs, ys = np.meshgrid(np.arange(z0, z1 + 1), np.arange(y0, y1 + 1), indexing="ij")
        base = to_model[:3, 1, None, None] * ys + to_model[:3, 2, None, None] * zs + to_model[:3, 3, None, None]
        first = np.full(zs.shape, -np.inf)
        last = np.full(zs.shape, np.inf)
        for axis in range(3):
            slope = to_model[axis, 0]
            if abs(slope) < 1e-12:
                inside = (base[axis] >= low[axis]) & (base[axis] < high[axis])
                first[~inside], last[~inside] = np.inf, -np.inf
                continue
            a, b = (low[axis] - base[axis]) / slope, (high[axis] - base[axis]) / slope
            first, last = np.maximum(first, np.minimum(a, b)), np.minimum(last, np.maximum(a, b))
        return np.ceil(first), np.floor(last)

    def _region_mask(self, first, last, start, stop, box):
        """(planes, by, bx) bool: the voxels of the box's planes start .. stop - 1 whose model
        point lies in the moving region (the rest keep the input's value); None when all do."""
        (x0, _, _), (x1, _, _) = box
        first, last = first[start:stop], last[start:stop]
        if (first <= x0).all() and (last >= x1).all():
            return None
        xs = torch.arange(x0, x1 + 1, device=self.device, dtype=torch.float64)
        first = torch.as_tensor(first, device=self.device)[..., None]
        last = torch.as_tensor(last, device=self.device)[..., None]
        return (xs >= first) & (xs <= last)

    # -- labels -------------------------------------------------------------------------------

    def _slabs(self, per_point):
        x, y, z = self.size
        depth = max(2, min(z, SLAB_POINTS // max(1, per_point * x * y)))
        starts = list(range(0, z, depth))
        if len(starts) > 1 and z - starts[-1] == 1:  # no one-plane slab (affine_grid's odd case)
            starts.pop()
        yield from zip(starts, starts[1:] + [z])

    def _model_points(self, start, stop):
        """(1, stop - start, y, x, 3) model-space normalised coordinates of a z slab's voxels
        (torch's affine_grid: the slab's own [-1, 1] mapped into the whole grid's)."""
        x, y, z = self.size
        depth, half = stop - start, max(z - 1, 1) / 2.0
        slab = np.eye(4)   # slab-normalised z -> whole-grid normalised z
        slab[2, 2] = (depth - 1) / 2.0 / half
        slab[2, 3] = (start + (depth - 1) / 2.0) / half - 1.0
        theta = torch.as_tensor((self.native_to_model @ slab)[:3], dtype=torch.float32, device=self.device)
        return F.affine_grid(theta[None], (1, 1, depth, y, x), align_corners=True)

    def warp_labels(self, labels):
        """(label maps, z, y, x) uint8: model-space label arrays on the native grid (nearest)."""
        x, y, z = self.size
        label_out = np.empty((len(labels), z, y, x), np.uint8)
        if not labels:
            return label_out
        stack = torch.as_tensor(np.stack(labels).astype(np.float32), device=self.device)[None]
        for start, stop in self._slabs(1):
            sampled = F.grid_sample(stack, self._model_points(start, stop), mode="nearest",
                                    padding_mode="zeros", align_corners=True)
            label_out[:, start:stop] = sampled[0].round().to(torch.uint8).cpu().numpy()
        return label_out

    def _image(self, array):
        import SimpleITK as sitk

        _, spacing, origin, direction = _native_grid(self.mapping)
        image = sitk.GetImageFromArray(array)
        image.SetSpacing(spacing)
        image.SetOrigin(origin)
        image.SetDirection(direction)
        return image

