"""Brain extraction: which voxels of a whole-head T1 are brain, so that the model (trained on
skull-stripped brains, registered to a skull-stripped template) sees only the brain.

The network is deepbet (MIT, Fisch et al. 2024, Comput. Biol. Med.): its wheel carries its
TorchScript weights, so it runs offline, and on this project's 2-core CPU it takes ~7 s and ~1.1 GB
for a 1 mm head (README, "Brain extraction", says what was measured and why it was chosen over
HD-BET and SynthStrip). It is not re-implemented here: only the glue (SimpleITK geometry <->
the canonical array deepbet expects) and the checks that refuse a mask that cannot be a brain.

``is_skull_stripped`` decides ``auto``: a skull-stripped scan is not stripped again.
"""

from __future__ import annotations

import functools

import numpy as np
import SimpleITK as sitk

from SynthMedLib.errors import InputError
from SynthMedLib.spaces.intensity import foreground_mask

MODES = ("auto", "on", "off")
# A mask outside this range (mL) is not a brain: adult brains (with the CSF inside the mask) are
# about 1000-1800 mL; a smaller mask missed most of it, a larger one took in scalp or neck.
BRAIN_ML_RANGE = (800.0, 2200.0)
# What the foreground (tissue brighter than a tenth of the robust range) of a skull-stripped scan
# encloses is the brain: at most the 2.2 L a brain mask may have. A head encloses more, its skull
# and scalp included. Measured (README, "Brain extraction"): skull-stripped MNI152 1.89 L, a cohort
# brain 1.33 L; cohort heads (scalp + skull, no face or neck) 2.4 L, a real head 4.1 L.
STRIPPED_MAX_FOREGROUND_ML = BRAIN_ML_RANGE[1]
# A small head (the cohort's smallest, 3 mm) encloses only 2.3 L, too close to that bound; its
# skull does not: 290-330 mL of enclosed dark voxels, where a skull-stripped brain has < 10 mL
# (MNI152 5 mL, an AD subject at 90 with large ventricles 3 mL: CSF is above the dark threshold).
STRIPPED_MAX_DARK_ML = 100.0
# deepbet was trained on ~1 mm scans; a scan far from that (or anisotropic) is resampled to a 1 mm
# isotropic grid for the network and the mask brought back.
NETWORK_SPACING_MM = 1.0
NATIVE_SPACING_OK_MM = (0.8, 1.6)
ANISOTROPY_OK = 1.25
# A T1 brain is brighter than what lies just outside it (CSF, dura, skull: dark in T1). The
# network still draws a brain-shaped mask on pure noise, so the mask is only trusted when the
# median inside it is at least this many times the median of a 1-4 mm shell around it. Measured
# (bench/brain_extraction.py): real and simulated heads 1.9-2.4, skull-stripped brains > 10,
# uniform noise 1.02.
MIN_EDGE_CONTRAST = 1.3
SHELL_MM = (1.0, 4.0)


def enclosed_volumes_ml(image: sitk.Image) -> tuple[float, float]:
    """(enclosed, dark enclosed) volumes in mL: what the tissue ``spaces.intensity.
    foreground_mask`` finds encloses, its holes filled, and the part of it that is not tissue. A
    head's skull (dark in T1, between a bright brain and a bright scalp) is enclosed and dark.
    Holes are filled slice by slice along each axis (the union of the three): a head cut off by
    the field of view below the skull still encloses it in every slice that crosses the scalp,
    where a 3D fill would leak out through the cut."""
    from scipy import ndimage

    tissue = foreground_mask(sitk.GetArrayViewFromImage(image))
    enclosed = tissue.copy()
    for axis in range(3):
        in_slice = np.ones((3, 3, 3), bool)
        in_slice[tuple(slice(None) if a != axis else slice(0, 3, 2) for a in range(3))] = False
        enclosed |= ndimage.binary_fill_holes(tissue, structure=in_slice)
    voxel_ml = float(np.prod(image.GetSpacing())) / 1000.0
    return (int(np.count_nonzero(enclosed)) * voxel_ml,
            int(np.count_nonzero(enclosed & ~tissue)) * voxel_ml)


def foreground_volume_ml(image: sitk.Image) -> float:
    """The volume (mL) the scan's tissue encloses (``enclosed_volumes_ml``)."""
    return enclosed_volumes_ml(image)[0]


def is_skull_stripped(image: sitk.Image) -> bool:
    """True when ``image`` holds a brain only (no scalp, skull, neck): what its tissue encloses
    is brain-sized and hardly any of it is dark."""
    enclosed, dark = enclosed_volumes_ml(image)
    return enclosed <= STRIPPED_MAX_FOREGROUND_ML and dark <= STRIPPED_MAX_DARK_ML


def wants_extraction(image: sitk.Image, mode: str) -> bool:
    """Whether ``mode`` (auto / on / off) asks for brain extraction on ``image``."""
    if mode not in MODES:
        raise InputError(f"brain extraction must be one of {', '.join(MODES)}, not {mode!r}")
    if mode == "auto":
        return not is_skull_stripped(image)
    return mode == "on"


@functools.lru_cache(maxsize=2)
def _network(device):
    try:
        from deepbet import BrainExtraction
    except ImportError as error:  # a user environment without the dependency
        raise InputError("Brain extraction needs the 'deepbet' package (pip install deepbet), or "
                         "give a skull-stripped scan with brain extraction off.") from error
    network = BrainExtraction(no_gpu=True)  # loaded on the CPU, then moved where asked
    network.model.to(device)
    network.bbox_model.to(device)
    return network


def extract_brain(image: sitk.Image, device="cpu", progress=None) -> sitk.Image:
    """The brain mask (uint8 0/1, on ``image``'s grid) of a T1 head scan; ``image`` is only read.

    Raises InputError when the network finds no brain or a mask whose volume is not a brain's."""
    import torch

    if progress is not None:
        progress(0.0)
    oriented = sitk.DICOMOrient(sitk.Cast(image, sitk.sitkFloat32), "RAS")
    work = _network_grid(oriented)
    # deepbet takes the array as nibabel gives a closest-canonical (RAS) image: x, y, z.
    array = np.ascontiguousarray(sitk.GetArrayFromImage(work).transpose(2, 1, 0))
    network = _network(str(torch.device(device)))
    try:
        with torch.no_grad():
            probability = network.run_model(array)
        mask = network.postprocess(probability > 0.5)
    except (AssertionError, ValueError) as error:
        # deepbet asserts on an empty bounding box and argmax()es an empty component list.
        raise InputError("Brain extraction found no brain in the scan: is it a T1-weighted head "
                         f"MRI? ({error or 'no foreground'})") from None
    on_work = sitk.GetImageFromArray(np.ascontiguousarray(mask.astype(np.float32)
                                                          .transpose(2, 1, 0)))
    on_work.CopyInformation(work)
    # Back onto the input's own grid: the 0/1 mask interpolated linearly and cut at one half gives
    # a smoother edge than nearest neighbour when the grids differ.
    on_input = sitk.Resample(on_work, image, sitk.Transform(), sitk.sitkLinear, 0.0,
                             sitk.sitkFloat32)
    brain = sitk.Cast(on_input >= 0.5, sitk.sitkUInt8)
    check_brain_mask(brain, image)
    if progress is not None:
        progress(1.0)
    return brain


def mask_volume_ml(mask: sitk.Image) -> float:
    return float(np.count_nonzero(sitk.GetArrayViewFromImage(mask))) * float(
        np.prod(mask.GetSpacing())) / 1000.0


def check_brain_mask(mask: sitk.Image, image: sitk.Image | None = None) -> float:
    """Refuse a mask that cannot be a brain (InputError), instead of aging the wrong region: no
    voxels, a volume outside BRAIN_ML_RANGE, or (given the ``image``) no T1 brain edge."""
    volume = mask_volume_ml(mask)
    if volume == 0:
        raise InputError("Brain extraction found no brain in the scan: is it a T1-weighted head "
                         "MRI?")
    low, high = BRAIN_ML_RANGE
    if not low <= volume <= high:
        raise InputError(f"Brain extraction gave a mask of {volume:.0f} mL, outside the "
                         f"{low:.0f}-{high:.0f} mL of a brain: the scan may not be a T1-weighted "
                         "adult head, may be cut off, or its voxel spacing in the header may be "
                         "wrong. Give a skull-stripped scan with brain extraction off to skip it.")
    if image is not None:
        contrast = edge_contrast(image, mask)
        if not contrast >= MIN_EDGE_CONTRAST:
            raise InputError("Brain extraction found no brain in the scan: the region it found is "
                             f"not brighter than its surroundings ({contrast:.2f} times, a T1 "
                             f"brain is at least {MIN_EDGE_CONTRAST} times). Is the scan a "
                             "T1-weighted head MRI?")
    return volume


def edge_contrast(image: sitk.Image, mask: sitk.Image) -> float:
    """Median intensity inside ``mask`` (deeper than 1 mm) over the median of a SHELL_MM shell
    outside it."""
    distance = sitk.GetArrayFromImage(sitk.SignedMaurerDistanceMap(
        mask, insideIsPositive=False, squaredDistance=False, useImageSpacing=True))
    array = sitk.GetArrayViewFromImage(image)
    inside = array[distance < -SHELL_MM[0]]
    shell = array[(distance > SHELL_MM[0]) & (distance <= SHELL_MM[1])]
    if inside.size == 0 or shell.size == 0:
        return 0.0
    low = min(0.0, float(np.min(array)))  # ratios of intensities above the scan's floor
    return float((np.median(inside) - low) / max(float(np.median(shell)) - low, 1e-6))


def brain_only(image: sitk.Image, mask: sitk.Image) -> sitk.Image:
    """``image`` (float32 copy) with everything outside ``mask`` set to the background the model
    saw in training (0, or the scan's minimum when that is below 0)."""
    background = min(0.0, float(np.min(sitk.GetArrayViewFromImage(image))))
    return sitk.Mask(sitk.Cast(image, sitk.sitkFloat32), mask, outsideValue=background)


def _network_grid(oriented):
    spacing = np.asarray(oriented.GetSpacing())
    if (NATIVE_SPACING_OK_MM[0] <= spacing.min() and spacing.max() <= NATIVE_SPACING_OK_MM[1]
            and spacing.max() / spacing.min() <= ANISOTROPY_OK):
        return oriented
    size = [max(1, int(round(n * s / NETWORK_SPACING_MM)))
            for n, s in zip(oriented.GetSize(), spacing)]
    reference = sitk.Image(size, sitk.sitkFloat32)
    reference.SetSpacing((NETWORK_SPACING_MM,) * 3)
    reference.SetDirection(oriented.GetDirection())
    # Same physical extent: the first voxel centre moves by half the spacing change.
    reference.SetOrigin(oriented.TransformContinuousIndexToPhysicalPoint(
        [(NETWORK_SPACING_MM / s - 1) / 2 for s in spacing]))
    source = oriented
    sigma = [max(0.0, (NETWORK_SPACING_MM - s) / 2.0) for s in spacing]
    if max(sigma) > 0.1:  # coarsening a 0.5 mm scan: smooth first so it does not alias
        source = sitk.SmoothingRecursiveGaussian(oriented, sigma)
    background = float(np.min(sitk.GetArrayViewFromImage(oriented)))
    return sitk.Resample(source, reference, sitk.Transform(), sitk.sitkLinear, background)
