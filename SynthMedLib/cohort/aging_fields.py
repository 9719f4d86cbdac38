"""The aging deformation: two velocity fields with a prescribed volume-change rate (divergence).

One grows the ventricles, taking the space from the white matter around them (ex-vacuo
enlargement); one shrinks the grey matter (and the white matter, less), the space being refilled
from outside the brain. Both are curl-free, ``v = grad(psi)`` with ``laplacian(psi) = rate``
(fields.gradient_flow). Volume does not grow linearly with a field's amplitude (tissue moves out of
the region that sources it), so a calibration table maps amplitude -> log volume factor, measured
the way every reported volume is measured: on label maps of the template rendered through the
field. The fields and the table are kept in the disk cache (disk_cache.py).
"""

import functools
import math

import numpy as np
import SimpleITK as sitk

from SynthMedLib.cohort.disk_cache import cached_arrays
from SynthMedLib.cohort.fields import (
    FIELD_SPACING,
    coarse,
    compose,
    exponentiate,
    field_grid,
    gradient_flow,
    to_transform,
)
from SynthMedLib.cohort.template import load_template

GROWTH_SOURCE_MM = 6.0  # blur of the ventricle mask that sources their growth
GROWTH_FLOOR_RAS_Z_MM = 2.0  # ventricles grow from their parts above this MNI z
NEAR_VENTRICLES_MM = 20.0  # how far from the ventricles the white matter gives way to them
WM_ATROPHY_SHARE = 0.3  # white matter shrinks at this fraction of the grey-matter rate
# Largest (negative, positive) amplitude calibrated for growth and atrophy; they cover ages
# 40-100. The brain is never grown (aging.py): inside a fixed skull it could not grow much.
CALIBRATION_RANGES = {"growth": (4.0, 32.0), "atrophy": (0.0, 2.0)}
CALIBRATION_OCTAVES = 5
CALIBRATION_SPACING = 2.0  # mm, the grid the calibration renders the template on


def _ras_z():
    grid = field_grid()
    k = np.arange(grid.GetSize()[2])
    z = grid.GetOrigin()[2] + grid.GetDirection()[8] * grid.GetSpacing()[2] * k
    return np.broadcast_to(z[:, None, None], tuple(reversed(grid.GetSize())))


def _compute_velocities():
    from scipy import ndimage

    template = load_template()
    ventricles, gm, wm, mask = (
        coarse(m) for m in (template.ventricles, template.gm, template.wm, template.mask)
    )
    # The source is a blurred mask of the lateral ventricles, not the ventricles themselves:
    # ventricular material moves outwards as it grows, and a source that stops at the old wall
    # would stall the growth. Above the floor only, or the third ventricle would push the thalami
    # apart into one central cavity.
    core = ((ventricles > 0.25) & (_ras_z() > GROWTH_FLOOR_RAS_Z_MM)).astype(float)
    source = ndimage.gaussian_filter(core, GROWTH_SOURCE_MM / FIELD_SPACING)
    near = ndimage.gaussian_filter((ventricles > 0.1).astype(float), NEAR_VENTRICLES_MM / FIELD_SPACING)
    giving_way = wm * near
    growth = source - giving_way * source.sum() / giving_way.sum()
    loss = gm + WM_ATROPHY_SHARE * wm
    outside = np.clip(1.0 - mask, 0.0, 1.0)
    atrophy = -loss + outside * loss.sum() / outside.sum()
    return gradient_flow(growth), gradient_flow(atrophy)


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


def _label_volumes(pullback):
    """(ventricles, GM + WM) mL of the template rendered through ``pullback``."""
    from SynthMedLib.cohort.grid import model_grid
    from SynthMedLib.cohort.tissues import count_volumes, label_array, tissue_fractions

    reference = model_grid(CALIBRATION_SPACING)
    fractions, _ = tissue_fractions(reference, pullback, sitk.Transform())
    volumes = count_volumes(label_array(fractions), CALIBRATION_SPACING**3 / 1000.0)
    return volumes["ventricles_ml"], volumes["gm_ml"] + volumes["wm_ml"]


def _calibration_table(velocity, tops):
    """Rows (amplitude, log ventricle factor, log brain factor), amplitude ascending."""
    ventricles0, brain0 = _label_volumes(sitk.Transform())
    rows = [(0.0, 0.0, 0.0)]
    for sign, top in zip((-1.0, 1.0), tops):
        if top <= 0:
            continue
        # The template aged by +a is rendered through the inverse flow, that of -a.
        for amplitude, ddf in _flow_family(-sign * velocity, top).items():
            ventricles, brain = _label_volumes(to_transform(ddf))
            rows.append((sign * amplitude, math.log(ventricles / ventricles0), math.log(brain / brain0)))
    return np.array(sorted(rows))


def _cache_key():
    import nilearn

    from SynthMedLib.cohort import grid, template

    return {
        "version": 3, "nilearn": nilearn.__version__, "field_spacing": FIELD_SPACING,
        "source_mm": GROWTH_SOURCE_MM, "floor": GROWTH_FLOOR_RAS_Z_MM, "near_mm": NEAR_VENTRICLES_MM,
        "wm_share": WM_ATROPHY_SHARE, "ranges": CALIBRATION_RANGES, "octaves": CALIBRATION_OCTAVES,
        "spacing": CALIBRATION_SPACING, "box": [grid.BOX_CENTRE_RAS, grid.BOX_EXTENT_MM],
        "ventricles": [template.VENTRICLE_BOX_RAS, template.VENTRICLE_CSF_THRESHOLD],
    }


@functools.lru_cache(maxsize=1)
def _aging_model():
    def compute():
        growth, atrophy = _compute_velocities()
        return {"growth": growth, "atrophy": atrophy,
                "growth_table": _calibration_table(growth, CALIBRATION_RANGES["growth"]),
                "atrophy_table": _calibration_table(atrophy, CALIBRATION_RANGES["atrophy"])}

    return cached_arrays("aging", _cache_key(), compute)


def aging_velocities():
    """(ventricle growth, brain atrophy) velocity fields, each for a unit amplitude."""
    model = _aging_model()
    return model["growth"], model["atrophy"]


def calibration_tables():
    model = _aging_model()
    return model["growth_table"], model["atrophy_table"]


def _inverse_interp(target, table, column, what):
    from scipy.interpolate import PchipInterpolator

    values, amplitudes = table[:, column], table[:, 0]
    steps = np.diff(values)
    if not (np.all(steps > 0) or np.all(steps < 0)):
        raise RuntimeError(f"the {what} calibration is not monotonic; the aging fields need fixing")
    order = np.argsort(values)
    if not values[order[0]] <= target <= values[order[-1]]:
        raise ValueError(f"{what} log-volume factor {target:.3f} is outside the calibrated range")
    return float(PchipInterpolator(values[order], amplitudes[order])(target))


def aging_amplitudes(log_ventricles, log_brain):
    """Amplitudes of the (growth, atrophy) fields that give these log volume factors."""
    from scipy.interpolate import PchipInterpolator

    growth_table, atrophy_table = calibration_tables()
    a_growth = _inverse_interp(log_ventricles, growth_table, 1, "ventricle")
    # Ventricle growth already took some brain volume; atrophy supplies the rest.
    brain_by_growth = float(PchipInterpolator(growth_table[:, 0], growth_table[:, 2])(a_growth))
    a_atrophy = _inverse_interp(log_brain - brain_by_growth, atrophy_table, 2, "brain")
    return a_growth, a_atrophy


def aging_velocity(log_ventricles, log_brain):
    """The velocity field whose flow ages the template by these log volume factors."""
    a_growth, a_atrophy = aging_amplitudes(log_ventricles, log_brain)
    growth, atrophy = aging_velocities()
    return a_growth * growth + a_atrophy * atrophy
