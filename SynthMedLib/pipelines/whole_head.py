"""A scan with its skull on: the model works on the brain, the user gets back their whole head.

Before the model: ``separate_brain`` decides (``auto``: only when the scan is not already
skull-stripped) and runs brain extraction (spaces/brain_extraction.py); the model space then sees
the brain only, as in training. After it: ``paste_into_head`` puts each changed brain back into
the user's own scan, so that skull, scalp, neck and background are the input's voxels exactly.

The paste is separate from the return to the native grid (back_to_native.py / identity.py move
the input's voxels by the model's change; how they do it is theirs): it only decides which
voxels of the result are kept. Inside the brain mask the result is the changed image; over a
``PASTE_MARGIN_MM`` band outside it the result fades linearly to the input (a hard cut would leave
a seam where the change still moves the cortex's outer edge); beyond the band it is the input,
bit for bit.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk

from SynthMedLib.pipelines.inversion_cache import scan_digest
from SynthMedLib.spaces.brain_extraction import brain_only, extract_brain, mask_volume_ml, wants_extraction
from SynthMedLib.spaces.checks import check_image

# How far (mm) beyond the brain mask a change may still reach. Aging moves the cortical surface
# inward by a millimetre or two per decade; 4 mm holds that with room to fade out.
PASTE_MARGIN_MM = 4.0
EXTRACTOR = "deepbet"


@dataclass
class HeadScan:
    image: sitk.Image              # the user's scan, never modified
    brain: sitk.Image              # what the model space sees: the scan, or its brain only
    digest: str                    # key of ``brain`` for the registration and inversion caches
    mask: sitk.Image = None        # the brain mask on the scan's grid, when extraction ran
    record: dict = field(default_factory=dict)   # for provenance
    _weight: sitk.Image = field(default=None, repr=False)

    @property
    def extracted(self):
        return self.mask is not None

    def weight(self):
        """paste_weight of the mask, computed once per request (a distance map of the whole scan:
        a few tenths of a second at 1 mm, not to be paid again for every target)."""
        if self._weight is None:
            self._weight = paste_weight(self.mask)
        return self._weight


def separate_brain(image: sitk.Image, mode: str = "auto", digest: str | None = None, cache=None,
                   device="cpu", progress=None) -> HeadScan:
    """A HeadScan for ``image``; ``mode``: auto (extract unless the scan is skull-stripped), on,
    off. The mask is remembered per scan by ``cache`` (the age slider asks again and again)."""
    # The generic refusals (not 3D, a label map, NaNs, ...) come before the network sees anything;
    # the model-space checks run again on the brain (spaces/mapping.py). A scan that passed once
    # is not checked again for every new age (0.2 s at 1 mm).
    if cache is None or not isinstance(image, sitk.Image):
        check_image(image)
    digest = digest or scan_digest(image)
    if cache is not None:
        cache.registration((digest, "checked"), lambda: check_image(image) is not None)

    def compute():
        # The decision is remembered with the mask: measuring the foreground of a 1 mm head
        # again for every new age would cost the slider half a second.
        if not wants_extraction(image, mode):
            return None, 0.0
        started = time.perf_counter()
        mask = extract_brain(image, device=device, progress=_stage(progress))
        return mask, time.perf_counter() - started

    key = (digest, "brain-mask", mode, EXTRACTOR)
    mask, seconds = cache.registration(key, compute) if cache is not None else compute()
    if mask is None:
        return HeadScan(image, image, digest, record={"mode": mode, "extracted": False})
    mask_digest = scan_digest(mask)
    record = {"mode": mode, "extracted": True, "method": _method(),
              "mask_sha256": mask_digest, "mask_ml": round(mask_volume_ml(mask), 1),
              "paste_margin_mm": PASTE_MARGIN_MM, "seconds": round(seconds, 2)}
    brain_digest = hashlib.sha256(f"{digest}:{mask_digest}".encode()).hexdigest()
    return HeadScan(image, brain_only(image, mask), brain_digest, mask, record)


def paste_weight(mask: sitk.Image, margin_mm: float = PASTE_MARGIN_MM) -> sitk.Image:
    """float32 on the mask's grid: 1 in the brain, falling linearly to 0 at ``margin_mm`` outside
    it, exactly 0 beyond."""
    distance = sitk.SignedMaurerDistanceMap(mask, insideIsPositive=False, squaredDistance=False,
                                            useImageSpacing=True)
    weight = np.clip(1.0 - sitk.GetArrayViewFromImage(distance) / float(margin_mm), 0.0, 1.0)
    image = sitk.GetImageFromArray(weight.astype(np.float32))
    image.CopyInformation(mask)
    return image


def paste_into_head(head: sitk.Image, changed: sitk.Image, weight: sitk.Image) -> sitk.Image:
    """``changed`` where ``weight`` is 1, ``head`` where it is 0 (those voxels copied, not
    computed), blended between; float32 on ``head``'s grid."""
    original = sitk.GetArrayFromImage(sitk.Cast(head, sitk.sitkFloat32))
    w = sitk.GetArrayViewFromImage(weight)
    inside = w > 0
    out = original.copy()
    new = sitk.GetArrayFromImage(sitk.Cast(changed, sitk.sitkFloat32))
    out[inside] = original[inside] + w[inside] * (new[inside] - original[inside])
    result = sitk.GetImageFromArray(out)
    result.CopyInformation(head)
    return result


def paste_results(results: list, scan: HeadScan) -> list:
    """Each TargetResult's image pasted into ``scan``'s whole head, its difference map redone."""
    if not scan.extracted:
        return results
    weight = scan.weight()
    native = sitk.Cast(scan.image, sitk.sitkFloat32)
    for result in results:
        result.image = paste_into_head(scan.image, result.image, weight)
        result.difference = sitk.Subtract(result.image, native)
    return results


def _method():
    try:
        from importlib.metadata import version
        return f"{EXTRACTOR} {version(EXTRACTOR)}"
    except Exception:  # metadata missing in an odd install: the name still says what ran
        return EXTRACTOR


def _stage(progress):
    if progress is None:
        return None
    # step(), not report(): it also stops here when the user cancelled.
    return lambda fraction: progress.step("brain extraction", int(100 * fraction), 100)
