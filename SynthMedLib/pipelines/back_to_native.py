"""The last step of both scan-based pipelines: decoded model-space predictions -> results on the
input's own grid.

Row 0 of the decoded batch is the model's reconstruction of the input (the source conditions);
rows 1.. are the targets. Each target becomes the input moved by the change the model predicts
between row 0 and that row (``identity.transfer_change``), its label map, the difference map
(target - input) and tissue volumes, so counterfactual aging and progression give identical files.
"""

import SimpleITK as sitk

from SynthMedLib.pipelines.identity import transfer_change
from SynthMedLib.pipelines.latent_io import array_to_image
from SynthMedLib.pipelines.outputs import TargetResult, label_volumes


def back_to_native(image, mapping, space, card, images, labels, targets, names, identity, progress):
    """(one TargetResult per target, the reconstruction's volumes) on ``image``'s grid."""
    grid = space.grid()
    reconstruction = array_to_image(images[0], grid)
    voxel_ml = mapping.model_voxel_ml()
    native_input = sitk.Cast(image, sitk.sitkFloat32)
    results = []
    for i, (target, name) in enumerate(zip(targets, names), start=1):
        progress.check()
        output, _ = transfer_change(image, mapping, reconstruction,
                                    array_to_image(images[i], grid), identity)
        result = TargetResult(name, target, output, difference=sitk.Subtract(output, native_input))
        if labels is not None:
            result.labels = mapping.labels_to_native(array_to_image(labels[i], grid,
                                                                    sitk.sitkUInt8))
            result.volumes = label_volumes(labels[i], card, voxel_ml)
        result.sidecar = {"target_conditions": target, "name": name}
        results.append(result)
    reference = label_volumes(labels[0], card, voxel_ml) if labels is not None else {}
    return results, reference
