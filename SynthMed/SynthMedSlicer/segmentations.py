"""Label map (SimpleITK) -> segmentation node with the card's segment names, colours and terminology."""

import numpy as np
import SimpleITK as sitk
import slicer

from SynthMedSlicer.volumes import set_geometry

TERMINOLOGY_TAG = "TerminologyEntry"


def ensure_converters():
    """Register Slicer's segmentation representation converters when nothing has.

    The Segmentations module does this when the application starts; in a bare MRML scene (scripts,
    tests on slicer-core) copying a segmentation (e.g. into a sequence) fails without them."""
    factory = slicer.vtkSegmentationConverterFactory.GetInstance()
    if factory.GetConverterRules():
        return
    for rule in ("vtkBinaryLabelmapToClosedSurfaceConversionRule", "vtkClosedSurfaceToBinaryLabelmapConversionRule",
                 "vtkClosedSurfaceToFractionalLabelmapConversionRule",
                 "vtkFractionalLabelmapToClosedSurfaceConversionRule"):
        factory.RegisterConverterRule(getattr(slicer, rule)())


def segmentation_node_from_labels(scene, labels, segments, name, reference_volume=None):
    """A new segmentation node holding one segment per label id of ``labels``.

    ``segments`` is the card's ``outputs.labels.segments`` list ({id, name, color, terminology});
    a label id the card does not name still becomes a segment ("label 7") so nothing is hidden.
    """
    ensure_converters()
    array = sitk.GetArrayFromImage(labels).astype(np.int32)
    spec = {int(s["id"]): s for s in segments}
    segmentation_node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", scene.GenerateUniqueName(name))
    segmentation_node.CreateDefaultDisplayNodes()
    if reference_volume is not None:
        segmentation_node.SetReferenceImageGeometryParameterFromVolumeNode(reference_volume)

    # Imported through a temporary label map node: Slicer's importer keeps the label map's exact
    # geometry (including oblique directions), which building segments by hand would not.
    labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "__synthmed_labels__")
    try:
        set_geometry(labelmap, labels)
        slicer.util.updateVolumeFromArray(labelmap, array.astype(np.int16))
        if not slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(labelmap, segmentation_node):
            raise RuntimeError("Slicer could not import the label map into a segmentation")
    finally:
        display = labelmap.GetDisplayNode()
        scene.RemoveNode(labelmap)
        if display is not None:
            scene.RemoveNode(display)

    segmentation = segmentation_node.GetSegmentation()
    for index in range(segmentation.GetNumberOfSegments()):
        segment = segmentation.GetNthSegment(index)
        label = int(segment.GetLabelValue())
        entry = spec.get(label, {})
        segment.SetName(entry.get("name", f"label {label}"))
        if "color" in entry:
            segment.SetColor(*[c / 255.0 for c in entry["color"]])
        if entry.get("terminology"):
            segment.SetTag(TERMINOLOGY_TAG, entry["terminology"])
    return segmentation_node


def labels_from_segmentation(segmentation_node, reference_volume, segments=()):
    """The segmentation as one label map (SimpleITK) on ``reference_volume``'s grid: the condition
    of a label-conditioned ControlNet. A segment named like one of the card's ``segments`` takes
    that label id; any other keeps its own label value."""
    from SynthMedSlicer.volumes import image_from_volume_node

    by_name = {s["name"].lower(): int(s["id"]) for s in segments}
    reference = image_from_volume_node(reference_volume)
    out = np.zeros(sitk.GetArrayViewFromImage(reference).shape, dtype=np.uint8)
    segmentation = segmentation_node.GetSegmentation()
    for index in range(segmentation.GetNumberOfSegments()):
        segment_id = segmentation.GetNthSegmentID(index)
        segment = segmentation.GetSegment(segment_id)
        value = by_name.get(segment.GetName().lower(), int(segment.GetLabelValue()))
        out[_segment_mask(segmentation_node, segment_id, reference_volume)] = value
    image = sitk.GetImageFromArray(out)
    image.CopyInformation(reference)
    return image


def numbered_labels_from_segmentation(segmentation_node, reference_volume):
    """The segmentation as one label map on ``reference_volume``'s grid with the segments numbered
    1..N in their order, and {number: segment name}: what a label-conditioned request sends, so
    the worker maps each segment to the model's label by its name (segments drawn in separate
    layers often share label value 1, so their own values cannot be sent)."""
    from SynthMedSlicer.volumes import image_from_volume_node

    reference = image_from_volume_node(reference_volume)
    out = np.zeros(sitk.GetArrayViewFromImage(reference).shape, dtype=np.uint16)
    segmentation = segmentation_node.GetSegmentation()
    names = {}
    for index in range(segmentation.GetNumberOfSegments()):
        segment_id = segmentation.GetNthSegmentID(index)
        out[_segment_mask(segmentation_node, segment_id, reference_volume)] = index + 1
        names[index + 1] = segmentation.GetSegment(segment_id).GetName()
    image = sitk.GetImageFromArray(out)
    image.CopyInformation(reference)
    return image, names


def _segment_mask(segmentation_node, segment_id, reference_volume):
    """Boolean mask of one segment on the reference grid (slicer.util's helper needs the
    application's scene; this works in any scene)."""
    import vtk

    scene = segmentation_node.GetScene()
    labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "__synthmed_export__")
    try:
        ids = vtk.vtkStringArray()
        ids.InsertNextValue(segment_id)
        slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(
            segmentation_node, ids, labelmap, reference_volume)
        return np.array(slicer.util.arrayFromVolume(labelmap)) > 0
    finally:
        display = labelmap.GetDisplayNode()
        scene.RemoveNode(labelmap)
        if display is not None:
            scene.RemoveNode(display)
