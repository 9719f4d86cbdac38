"""Smooth invertible deformations of the template, as stationary velocity fields on a 4 mm grid.

A subject's anatomy and its aging are both exponentials of velocity fields (MONAI's ``DVF2DDF``,
scaling and squaring), so they are diffeomorphisms and their inverses, the maps a resampler needs,
are simply the exponentials of the negated fields.

Aging uses two fields with a prescribed volume-change rate (divergence): one grows the ventricles,
taking the space from the white matter around them (ex-vacuo enlargement); one shrinks the grey
matter (and the white matter, less), the space being refilled from outside the brain. Both are
curl-free, ``v = grad(psi)`` with ``laplacian(psi) = rate``, solved with SciPy's FFT. A table of
amplitude -> volume factor, measured once per process from the Jacobian determinant, turns the
atrophy model's target volumes into field amplitudes.
"""

import functools
import math

import numpy as np
import SimpleITK as sitk

from SynthMedLib.cohort.disk_cache import cached_arrays
from SynthMedLib.cohort.subject import rng
from SynthMedLib.cohort.template import load_template

FIELD_SPACING = 4.0
WARP_SMOOTHNESS_MM = 20.0  # Gaussian sigma of a subject's random velocity field
WARP_RMS_MM = 3.0  # RMS of that velocity field
GROWTH_SOURCE_MM = 6.0  # blur of the ventricle mask that sources their growth
NEAR_VENTRICLES_MM = 20.0  # how far from the ventricles the white matter gives way to them
WM_ATROPHY_SHARE = 0.3  # white matter shrinks at this fraction of the grey-matter rate
# Largest (shrink, grow) amplitudes calibrated for (growth, atrophy); they cover ages 40-100.
CALIBRATION_RANGES = ((4.0, 32.0), (1.0, 2.0))
CALIBRATION_OCTAVES = 4


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


def exponentiate(velocity):
    """Displacement (3, Z, Y, X, voxel units, components z, y, x) of the flow of ``velocity``."""
    import torch
    from monai.networks.blocks.warp import DVF2DDF

    with torch.no_grad():
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


def _cache_key():
    import nilearn

    from SynthMedLib.cohort import template

    return {
        "version": 1, "nilearn": nilearn.__version__, "field_spacing": FIELD_SPACING,
        "source_mm": GROWTH_SOURCE_MM, "near_mm": NEAR_VENTRICLES_MM, "wm_share": WM_ATROPHY_SHARE,
        "ranges": CALIBRATION_RANGES, "octaves": CALIBRATION_OCTAVES,
        "ventricles": [template.VENTRICLE_BOX_RAS, template.VENTRICLE_CSF_THRESHOLD],
    }


@functools.lru_cache(maxsize=1)
def _aging_model():
    """The aging fields and their calibration tables, from the disk cache when possible."""

    def compute():
        growth, atrophy = _aging_velocities()
        growth_table, atrophy_table = _calibration(growth, atrophy)
        return {"growth": growth, "atrophy": atrophy, "growth_table": growth_table,
                "atrophy_table": atrophy_table}

    return cached_arrays("aging", _cache_key(), compute)


def aging_velocities():
    """(ventricle growth, brain atrophy) velocity fields, each for a unit amplitude."""
    model = _aging_model()
    return model["growth"], model["atrophy"]


def _aging_velocities():
    from scipy import ndimage

    template = load_template()
    ventricles, gm, wm, mask = (
        coarse(m) for m in (template.ventricles, template.gm, template.wm, template.mask)
    )
    # The source is a blurred ventricle mask, not the ventricles themselves: ventricular material
    # moves outwards as it grows, and a source that stops at the old wall would stall the growth.
    core = (ventricles > 0.25).astype(float)
    source = ndimage.gaussian_filter(core, GROWTH_SOURCE_MM / FIELD_SPACING)
    near = ndimage.gaussian_filter((ventricles > 0.1).astype(float), NEAR_VENTRICLES_MM / FIELD_SPACING)
    giving_way = wm * near
    growth = source - giving_way * source.sum() / giving_way.sum()
    loss = gm + WM_ATROPHY_SHARE * wm
    outside = np.clip(1.0 - mask, 0.0, 1.0)
    atrophy = -loss + outside * loss.sum() / outside.sum()
    return gradient_flow(growth), gradient_flow(atrophy)


def compose(outer, inner):
    """Displacement of ``outer`` after ``inner`` (MONAI's Warp samples ``outer`` at x + inner)."""
    import torch
    from monai.networks.blocks.warp import Warp

    with torch.no_grad():
        outer_t = torch.from_numpy(np.ascontiguousarray(outer, dtype=np.float32))[None]
        inner_t = torch.from_numpy(np.ascontiguousarray(inner, dtype=np.float32))[None]
        warped = Warp(mode="bilinear", padding_mode="border")(outer_t, inner_t)
    return inner + warped[0].numpy().astype(np.float64)


def _flow_family(velocity, top):
    """Flows of amplitudes 2^k u and 3 * 2^k u up to ``top`` from one exponential and repeated
    composition: exp(2a v) = exp(a v) o exp(a v) and exp(3a v) = exp(2a v) o exp(a v)."""
    unit = top / 2.0**CALIBRATION_OCTAVES
    flows = {unit: exponentiate(unit * velocity)}
    amplitude = unit
    while amplitude < top:
        flows[2 * amplitude] = compose(flows[amplitude], flows[amplitude])
        if 3 * amplitude < top:
            flows[3 * amplitude] = compose(flows[2 * amplitude], flows[amplitude])
        amplitude *= 2
    return flows


def _calibration(*velocities):
    """Per field: amplitudes and the (ventricle, brain) log volume factors they give."""
    template = load_template()
    ventricles = coarse(template.ventricles)
    brain = coarse(template.gm) + coarse(template.wm)
    tables = []
    for velocity, (top_down, top_up) in zip(velocities, CALIBRATION_RANGES):
        rows = [(0.0, 0.0, 0.0)]
        for sign, top in ((-1.0, top_down), (1.0, top_up)):
            for amplitude, ddf in _flow_family(sign * velocity, top).items():
                jac = jacobian_determinant(ddf)
                rows.append((sign * amplitude,
                             math.log((ventricles * jac).sum() / ventricles.sum()),
                             math.log((brain * jac).sum() / brain.sum())))
        tables.append(np.array(sorted(rows)))
    return tuple(tables)


def _inverse_interp(target, table, column, what):
    from scipy.interpolate import PchipInterpolator

    values, amplitudes = table[:, column], table[:, 0]
    order = np.argsort(values)
    if not values[order[0]] <= target <= values[order[-1]]:
        raise ValueError(f"{what} log-volume factor {target:.3f} is outside the calibrated range")
    return float(PchipInterpolator(values[order], amplitudes[order])(target))


def aging_amplitudes(log_ventricles, log_brain):
    """Amplitudes of the (growth, atrophy) fields that give these log volume factors."""
    from scipy.interpolate import PchipInterpolator

    model = _aging_model()
    growth_table, atrophy_table = model["growth_table"], model["atrophy_table"]
    a_growth = _inverse_interp(log_ventricles, growth_table, 1, "ventricle")
    # Ventricle growth already took some brain volume; atrophy supplies the rest.
    brain_by_growth = float(PchipInterpolator(growth_table[:, 0], growth_table[:, 2])(a_growth))
    a_atrophy = _inverse_interp(log_brain - brain_by_growth, atrophy_table, 2, "brain")
    return a_growth, a_atrophy


def aging_velocity(log_ventricles, log_brain):
    a_growth, a_atrophy = aging_amplitudes(log_ventricles, log_brain)
    growth, atrophy = aging_velocities()
    return a_growth * growth + a_atrophy * atrophy
