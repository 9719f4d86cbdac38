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

from SynthMedLib.pipelines.identity import transfer_change, transfer_scaled_change
from SynthMedLib.pipelines.latent_io import array_to_image
from SynthMedLib.pipelines.outputs import TargetResult, label_volumes, volume_columns


def reference_volumes(labels, card, mapping):
    """The volumes of the model's reconstruction (row 0), {} for a model without label maps."""
    return {} if labels is None else label_volumes(labels[0], card, mapping.model_voxel_ml())


def back_to_native(image, mapping, space, card, images, labels, targets, names, identity_method, progress,
                   expected=None, scaled_by="ventricles_ml", outside_change=1.0):
    """(one TargetResult per target, the reconstruction's volumes) on ``image``'s grid."""
    grid = space.grid()
    reconstruction = array_to_image(images[0], grid)
    voxel_ml = mapping.model_voxel_ml()
    native_input = sitk.Cast(image, sitk.sitkFloat32)
    label_id = {column: i for i, column in volume_columns(card)}.get(scaled_by)
    scaled = (expected is not None and identity_method.startswith("deformation") and labels is not None
              and label_id is not None)
    results = []
    for i, (target, name) in enumerate(zip(targets, names), start=1):
        progress.check()
        target_image, sidecar = array_to_image(images[i], grid), {}
        if scaled and expected[i - 1] is not None:
            output, moved, scale, reached = transfer_scaled_change(
                image, mapping, reconstruction, target_image,
                array_to_image(labels[0], grid, sitk.sitkUInt8), label_id,
                expected[i - 1][scaled_by] / voxel_ml, outside=outside_change)
            target_labels = sitk.GetArrayFromImage(moved)
            sidecar["change_scaled_to"] = {"volume": scaled_by, "scale": round(scale, 4),
                                           "reached": reached}
        else:
            output, _ = transfer_change(image, mapping, reconstruction, target_image, identity_method)
            target_labels = None if labels is None else labels[i]
        result = TargetResult(name, target, output, difference=sitk.Subtract(output, native_input))
        if target_labels is not None:
            result.labels = mapping.labels_to_native(array_to_image(target_labels, grid,
                                                                    sitk.sitkUInt8))
            result.volumes = label_volumes(target_labels, card, voxel_ml)
        result.sidecar = {"target_conditions": target, "name": name, **sidecar}
        results.append(result)
    return results, reference_volumes(labels, card, mapping)
