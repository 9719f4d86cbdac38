"""The model-space grid: a fixed brain box in MNI space, voxel counts padded to multiples of 16.

Multiples of 16 let an autoencoder (x4) followed by a diffusion UNet (x4) downsample without
remainders. At 3 mm the grid is 48 x 64 x 48 voxels.
"""

import math

import numpy as np
import SimpleITK as sitk

from SynthMedLib.errors import InputError

# RAS mm. Width x height x depth of a cohort brain (the MNI152 brain scaled by the cohort's mean
# head size, see subject.py) with a few mm to spare; the box is centred on the brain.
BOX_CENTRE_RAS = (0.0, -17.0, 8.0)
BOX_EXTENT_MM = (144.0, 184.0, 144.0)
MULTIPLE = 16
SPACING_RANGE = (1.0, 4.0)
# Direction cosines of an MNI-oriented NIfTI (RAS+ affine = diag(1,1,1)) in ITK's LPS world.
MNI_DIRECTION = (-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0)


def grid_shape(spacing):
    return tuple(
        MULTIPLE * math.ceil(round(extent / spacing, 6) / MULTIPLE) for extent in BOX_EXTENT_MM
    )


def model_grid(spacing=3.0):
    """An empty float32 reference image of the model-space grid at ``spacing`` mm (1 to 4)."""
    spacing = float(spacing)
    if not SPACING_RANGE[0] <= spacing <= SPACING_RANGE[1]:
        raise InputError(
            f"spacing {spacing} mm is outside the supported {SPACING_RANGE[0]:g}-"
            f"{SPACING_RANGE[1]:g} mm"
        )
    shape = grid_shape(spacing)
    first_voxel_ras = np.array(BOX_CENTRE_RAS) - (np.array(shape) - 1) / 2.0 * spacing
    origin_lps = first_voxel_ras * np.array([-1.0, -1.0, 1.0])
    image = sitk.Image([int(n) for n in shape], sitk.sitkFloat32)
    image.SetSpacing((spacing,) * 3)
    image.SetDirection(MNI_DIRECTION)
    image.SetOrigin(tuple(float(v) for v in origin_lps))
    return image


def head_grid(spacing=3.0, margin_mm=None):
    """The model grid's box grown by ``margin_mm`` (default: room for skull and scalp, see
    head.py) on every side, at ``spacing`` mm: where a subject rendered with its head fits."""
    from SynthMedLib.cohort.head import HEAD_MARGIN_MM

    brain = model_grid(spacing)
    margin = HEAD_MARGIN_MM if margin_mm is None else float(margin_mm)
    extra = int(math.ceil(margin / brain.GetSpacing()[0]))
    image = sitk.Image([n + 2 * extra for n in brain.GetSize()], sitk.sitkFloat32)
    image.SetSpacing(brain.GetSpacing())
    image.SetDirection(brain.GetDirection())
    image.SetOrigin(brain.TransformIndexToPhysicalPoint([-extra] * 3))
    return image
