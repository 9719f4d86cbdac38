"""Smooth invertible deformations of the template, as stationary velocity fields on a 4 mm grid.

A subject's anatomy and its aging (aging_fields.py) are both exponentials of velocity fields
(MONAI's ``DVF2DDF``, scaling and squaring), so they are diffeomorphisms and their inverses, the
maps a resampler needs, are simply the exponentials of the negated fields.
"""

import contextlib
import functools
import math

import numpy as np
import SimpleITK as sitk

from SynthMedLib.cohort.subject import rng
from SynthMedLib.cohort.template import load_template

FIELD_SPACING = 4.0
WARP_SMOOTHNESS_MM = 20.0  # Gaussian sigma of a subject's random velocity field
WARP_RMS_MM = 3.0  # RMS of that velocity field


@functools.lru_cache(maxsize=1)
def field_grid():
    """The 4 mm grid covering the template, in the template's orientation."""
    reference = load_template().reference()
    size = [
        int(math.ceil((n - 1) * s / FIELD_SPACING)) + 1
        for n, s in zip(reference.GetSize(), reference.GetSpacing())
    ]
    grid = sitk.Image(size, sitk.sitkFloat32)
    grid.SetOrigin(reference.GetOrigin())
    grid.SetDirection(reference.GetDirection())
    grid.SetSpacing((FIELD_SPACING,) * 3)
    return grid


def coarse(image):
    """A template map on the field grid, low-passed first so that it is not aliased."""
    smooth = sitk.SmoothingRecursiveGaussian(image, FIELD_SPACING / 2.0)
    resampled = sitk.Resample(smooth, field_grid(), sitk.Transform(), sitk.sitkLinear, 0.0)
    return sitk.GetArrayFromImage(resampled).astype(np.float64)


@contextlib.contextmanager
def _one_torch_thread():
    """These fields are small (~140k voxels): more threads only add synchronisation, and on a busy
    machine their spin-waiting costs five times the CPU time of the work (measured)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            yield
    finally:
        torch.set_num_threads(threads)


def exponentiate(velocity):
    """Displacement (3, Z, Y, X, voxel units, components z, y, x) of the flow of ``velocity``."""
    import torch
    from monai.networks.blocks.warp import DVF2DDF

    with _one_torch_thread():
        field = torch.from_numpy(np.ascontiguousarray(velocity, dtype=np.float32))[None]
        ddf = DVF2DDF(num_steps=7, mode="bilinear", padding_mode="border")(field)
    return ddf[0].numpy().astype(np.float64)


def jacobian_determinant(ddf):
    """det(I + grad u) of a voxel-unit displacement; orthogonal directions and isotropic spacing
    leave the determinant unchanged in world coordinates."""
    gradients = np.stack([np.stack(np.gradient(component), axis=-1) for component in ddf], axis=-2)
    return np.linalg.det(gradients + np.eye(3))


def to_transform(ddf):
    """A SimpleITK displacement-field transform (LPS world) from a voxel-unit displacement."""
    grid = field_grid()
    index_xyz = ddf[::-1] * FIELD_SPACING
    direction = np.array(grid.GetDirection()).reshape(3, 3)
    world = np.einsum("ij,j...->...i", direction, index_xyz)
    image = sitk.GetImageFromArray(world.astype(np.float64), isVector=True)
    image.CopyInformation(grid)
    return sitk.DisplacementFieldTransform(image)


@functools.lru_cache(maxsize=16)
def subject_velocity(seed):
    """The seeded, smooth random velocity field that makes a subject's anatomy."""
    from scipy import ndimage

    shape = tuple(reversed(field_grid().GetSize()))
    noise = rng(seed, "warp").standard_normal((3, *shape))
    sigma = WARP_SMOOTHNESS_MM / FIELD_SPACING
    velocity = np.stack([ndimage.gaussian_filter(c, sigma, mode="constant") for c in noise])
    velocity *= (WARP_RMS_MM / FIELD_SPACING) / np.sqrt(np.mean(velocity**2))
    return velocity


@functools.lru_cache(maxsize=16)
def subject_pullback(seed):
    """Displacement from a subject's anatomy back to the template (kept: one subject is usually
    rendered at several ages in a row)."""
    return exponentiate(-subject_velocity(seed))


def gradient_flow(rate):
    """The curl-free velocity whose divergence is ``rate`` (Poisson equation by FFT; the zero
    padding keeps the periodic FFT from wrapping one side of the head onto the other)."""
    from scipy import fft

    shape = rate.shape
    padded = [2 * n for n in shape]
    spectrum = fft.rfftn(rate, s=padded)
    frequencies = [2 * np.pi * fft.fftfreq(n) for n in padded[:-1]]
    frequencies.append(2 * np.pi * fft.rfftfreq(padded[-1]))
    k = np.meshgrid(*frequencies, indexing="ij", sparse=True)
    k2 = k[0] ** 2 + k[1] ** 2 + k[2] ** 2
    k2[0, 0, 0] = 1.0
    potential = -spectrum / k2
    potential[0, 0, 0] = 0.0
    crop = tuple(slice(0, n) for n in shape)
    return np.stack([fft.irfftn(1j * ki * potential, s=padded)[crop] for ki in k])


def compose(outer, inner):
    """Displacement of ``outer`` after ``inner`` (MONAI's Warp samples ``outer`` at x + inner)."""
    import torch
    from monai.networks.blocks.warp import Warp

    with _one_torch_thread():
        outer_t = torch.from_numpy(np.ascontiguousarray(outer, dtype=np.float32))[None]
        inner_t = torch.from_numpy(np.ascontiguousarray(inner, dtype=np.float32))[None]
        warped = Warp(mode="bilinear", padding_mode="border")(outer_t, inner_t)
    return inner + warped[0].numpy().astype(np.float64)


