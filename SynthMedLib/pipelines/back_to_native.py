"""The last step of both scan-based pipelines: decoded model-space predictions -> results on the
input's own grid.

Row 0 of the decoded batch is the model's reconstruction of the input (the source conditions);
rows 1.. are the targets. Each target becomes the input moved by the change the model predicts
between row 0 and that row (``identity.transfer_change``), its label map, the difference map
(target - input) and tissue volumes, so counterfactual aging and progression give identical files.

With ``expected`` volumes per target (an auxiliary volume model's prediction, or None for a target
it cannot speak for) and a deformation identity method, the size of each change comes from those volumes
(``identity.transfer_scaled_change``, on the structure named by ``scaled_by``) and the label map
is the reconstruction's moved with the image, so image, labels and volumes stay consistent;
``outside_change`` (0..1) is how much of the model's change away from that structure is kept.
"""

import SimpleITK as sitk
import torch

from SynthMedLib.pipelines import warm_start
from SynthMedLib.pipelines.identity import (
    change_field,
    estimate_displacements,
    field_smoothings,
    residual_to_native,
    scaled_change_field,
    transfer_change,
    warp_native,
)
from SynthMedLib.pipelines.latent_io import array_to_image
from SynthMedLib.pipelines.native_warp import NativeWarp
from SynthMedLib.pipelines.outputs import TargetResult, label_volumes, volume_columns

# "torch": every target's fields in torch (demons.py; the model's device), each started from its
# nearest known neighbour's (warm_start.py), then warped back in torch (native_warp.py: ~4x faster
# than SimpleITK's resampling per target on one CPU thread, bench/results/native_warp_cpu.md) and
# handed on one by one as they are ready. "simpleitk": the original path (SimpleITK's demons and
# warp per target, from zero), kept for the side-by-side benchmark (bench/interactive_latency.py)
# and as the reference of the tests.
ENGINES = ("torch", "simpleitk")
DEFAULT_ENGINE = "torch"
# Devices whose warp runs through torch (the rest: SimpleITK's Resample per target).
TORCH_WARP_DEVICE_TYPES = ("cuda", "cpu")


def reference_volumes(labels, card, mapping):
    """The volumes of the model's reconstruction (row 0), {} for a model without label maps."""
    return {} if labels is None else label_volumes(labels[0], card, mapping.model_voxel_ml())


def back_to_native(image, mapping, space, card, images, labels, targets, names, identity_method, progress,
                   expected=None, scaled_by="ventricles_ml", outside_change=1.0, on_result=None,
                   device=None, engine=None, source=None, known_fields=None):
    """(one TargetResult per target, the reconstruction's volumes) on ``image``'s grid.

    ``on_result(index, result)`` is called as soon as each target is complete (the worker streams
    it to the Slicer panel); ``device``: where the fields are estimated and the batched warp runs
    (the model's device). ``source``: the reconstruction's conditions; ``known_fields``: a dict
    kept between requests on one scan's reconstruction (``InversionCache.fields``): each target's
    fields start from the nearest known target's (warm_start.py) and are added to it."""
    engine = engine or DEFAULT_ENGINE
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, not {engine!r}")
    grid = space.grid()
    reconstruction = array_to_image(images[0], grid)
    voxel_ml = mapping.model_voxel_ml()
    native_input = sitk.Cast(image, sitk.sitkFloat32)
    label_id = {column: i for i, column in volume_columns(card)}.get(scaled_by)
    scaled = (expected is not None and identity_method.startswith("deformation") and labels is not None
              and label_id is not None)
    reference_labels = (array_to_image(labels[0], grid, sitk.sitkUInt8) if labels is not None
                        else None)
    known = {} if known_fields is None else known_fields
    if source is not None:
        known[warm_start.SOURCE_KEY] = dict(source)

    def is_scaled(i):
        return scaled and expected[i - 1] is not None

    def estimated_fields(i, target_image):
        """(the target's model-space fields (torch demons), their voxel form, the smoothings, the
        neighbour's change scale or None): started from the nearest known target's when there is
        one nearer than the source (warm_start.py)."""
        smoothings = field_smoothings(is_scaled(i), outside=outside_change)
        start, scale = warm_start.nearest(known, targets[i - 1], smoothings)
        fields, voxels = estimate_displacements(reconstruction, [target_image], smoothings,
                                                initial=start, device=device,
                                                cancelled=progress.cancelled)
        progress.check()
        return fields[0], voxels, smoothings, scale

    def model_space_change(i):
        """(model-space field or None, native output or None, model-space residual or None,
        model-space labels or None, sidecar) of target i (1-based row of ``images``)."""
        progress.check()
        target_image = array_to_image(images[i], grid)
        deformation = identity_method.startswith("deformation")
        fields, voxels, smoothings, guess = (estimated_fields(i, target_image)
                                             if engine == "torch" and deformation else (None,) * 4)
        if is_scaled(i):
            field, moved, scale, reached = scaled_change_field(
                reconstruction, target_image, reference_labels, label_id,
                expected[i - 1][scaled_by] / voxel_ml, outside=outside_change,
                fields=fields, guess=guess)
            if voxels is not None:
                warm_start.remember(known, targets[i - 1], smoothings, voxels, scale)
            sidecar = {"change_scaled_to": {"volume": scaled_by, "scale": round(scale, 4),
                                            "reached": reached}}
            if not reached:
                got = label_volumes(sitk.GetArrayFromImage(moved), card, voxel_ml).get(scaled_by)
                sidecar["warnings"] = [
                    f"{names[i - 1]}: the volume course expects {scaled_by[:-3]} of "
                    f"{expected[i - 1][scaled_by]:.1f} mL, the model's change reaches only "
                    f"{got:.1f} mL (the largest it allows); this target is less changed than the "
                    "course predicts"]
            return field, None, None, sitk.GetArrayFromImage(moved), sidecar
        if voxels is not None:
            warm_start.remember(known, targets[i - 1], smoothings, voxels)
        target_labels = None if labels is None else labels[i]
        if engine == "simpleitk" or not deformation:
            output, _ = transfer_change(image, mapping, reconstruction, target_image, identity_method)
            return None, output, None, target_labels, {}
        field, residual = change_field(reconstruction, target_image, identity_method,
                                       displacement=fields[0])
        return field, None, residual, target_labels, {}

    def finish(i, output, target_labels, sidecar):
        target, name = targets[i - 1], names[i - 1]
        result = TargetResult(name, target, output, difference=sitk.Subtract(output, native_input))
        if target_labels is not None:
            result.labels = mapping.labels_to_native(array_to_image(target_labels, grid, sitk.sitkUInt8))
            result.volumes = label_volumes(target_labels, card, voxel_ml)
        result.sidecar = {"target_conditions": target, "name": name, **sidecar}
        if on_result is not None:
            on_result(i - 1, result)
        return result

    torch_warp = engine == "torch" and torch.device(device or "cpu").type in TORCH_WARP_DEVICE_TYPES
    warp = NativeWarp(mapping, device) if torch_warp else None
    results = {}
    # "torch": targets nearest to a known one first, so that each starts from a neighbour
    order = (range(1, len(targets) + 1) if engine == "simpleitk"
             else [i + 1 for i in warm_start.order(known, targets)])
    for i in order:
        field, output, residual, target_labels, sidecar = model_space_change(i)
        if field is not None:
            output = (warp.warp(native_input, [field])[0][0] if warp is not None
                      else warp_native(native_input, mapping, field))
        if residual is not None:
            output = sitk.Add(output, residual_to_native(mapping, residual))
        results[i] = finish(i, output, target_labels, sidecar)
    return [results[i] for i in sorted(results)], reference_volumes(labels, card, mapping)
