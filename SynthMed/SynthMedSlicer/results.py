"""Worker results -> MRML nodes: volumes, segmentations, sequences with a browser, volume table
and plot, all marked synthetic and placed in one subject-hierarchy folder.

Nodes are only created here, from a finished result; a cancelled or failed request never
reaches this code, so it leaves no partial nodes behind.
"""

from dataclasses import dataclass, field

import SimpleITK as sitk

from SynthMedSlicer import hierarchy, series, tables
from SynthMedSlicer.segmentations import segmentation_node_from_labels
from SynthMedSlicer.volumes import volume_node_from_image

INDEX_UNITS = {"age": "years", "years": "years"}
# Slicer's default diverging table (vtkMRMLColorLogic adds it with this ID): blue for loss, red
# for growth, white at the centre, which the window below puts at zero change.
DIFFERENCE_COLOR_NODE = "vtkMRMLColorTableNodeFileDivergingBlueRed.txt"


@dataclass
class GeneratedNodes:
    volumes: list = field(default_factory=list)
    segmentations: list = field(default_factory=list)
    folder: int = 0

    def __iter__(self):  # volumes, segmentations = logic.generate(...)
        return iter((self.volumes, self.segmentations))


@dataclass
class SeriesNodes:
    sequence: object = None              # the synthetic images, index "age" or "years"
    label_sequence: object = None        # segmentations, same index
    difference_sequence: object = None   # result - input
    browser: object = None
    proxies: list = field(default_factory=list)
    table: object = None
    chart: object = None
    plot_series: list = field(default_factory=list)  # one per volume column, under the folder too
    folder: int = 0

    @property
    def nodes(self):
        return [n for n in (self.sequence, self.label_sequence, self.difference_sequence, self.browser,
                            self.table, self.chart) if n is not None] + list(self.proxies) + list(self.plot_series)

    @property
    def difference_proxy(self):
        """The difference map the views show (the browser's proxy of the difference sequence)."""
        if self.difference_sequence is None or self.browser is None:
            return None
        return self.browser.GetProxyNode(self.difference_sequence)


def _entries(result, role):
    return [e for e in result.get("images", []) if e.get("role") == role]


def build_generated(scene, result, folder_name, synthetic=True):
    """One volume (+ segmentation) node per sample of a generate (or cohort) result."""
    out = GeneratedNodes(folder=hierarchy.output_folder(scene, folder_name))
    labels_by_sample = {e.get("index", {}).get("sample", i): e for i, e in enumerate(_entries(result, "labels"))}
    for i, entry in enumerate(_entries(result, "image")):
        volume = volume_node_from_image(scene, sitk.ReadImage(entry["path"]), entry["name"])
        if synthetic:
            hierarchy.mark_synthetic(volume, entry.get("provenance", {}))
        out.volumes.append(volume)
        label_entry = labels_by_sample.get(entry.get("index", {}).get("sample", i))
        if label_entry is not None:
            segmentation = segmentation_node_from_labels(
                scene, sitk.ReadImage(label_entry["path"]), result.get("segments", []),
                f"{volume.GetName()} segmentation", reference_volume=volume)
            if synthetic:
                hierarchy.mark_synthetic(segmentation, label_entry.get("provenance", {}))
            out.segmentations.append(segmentation)
    hierarchy.move_into(scene, out.folder, out.volumes + out.segmentations)
    return out


def build_series(scene, result, name, input_node=None):
    """Sequences (images, labels, differences) over the result's index with one browser, and
    the volume table + plot; in a folder under the input's study."""
    index_name = result.get("indexName", "age")
    unit = INDEX_UNITS.get(index_name, "")
    out = SeriesNodes(folder=hierarchy.output_folder(scene, name, input_node))
    made = []

    def as_sequence(role, make, suffix):
        entries = sorted(_entries(result, role), key=lambda e: float(e["index"][index_name]))
        if not entries:
            return None
        nodes = [make(entry) for entry in entries]
        sequence = series.sequence_from_nodes(scene, nodes, [e["index"][index_name] for e in entries],
                                              index_name, unit, f"{name} {suffix}")
        hierarchy.mark_synthetic(sequence, result.get("provenance") or entries[0].get("provenance", {}))
        for node in nodes:  # the sequence holds copies; the stand-alone nodes were only carriers
            _remove_with_display(scene, node)
        made.append(sequence)
        return sequence

    def node(entry):
        return node_from_entry(scene, entry, result.get("segments", []))

    out.sequence = as_sequence("image", node, "images")
    out.label_sequence = as_sequence("labels", node, "segmentations")
    out.difference_sequence = as_sequence("difference", node, "difference maps")
    if made:
        out.browser, out.proxies = series.add_browser(scene, made, f"{name} browser")
        for proxy, sequence in zip(out.proxies, made):
            if proxy is not None:
                proxy.SetName(sequence.GetName())
        if out.difference_sequence is not None:
            centre_on_zero(scene, out.proxies[made.index(out.difference_sequence)], out.difference_sequence)
    if result.get("volumes"):
        out.table = tables.volumes_table(scene, result["volumes"], index_name, f"{name} volumes")
        out.chart, out.plot_series = tables.volumes_plot(scene, out.table, index_name, f"{name} volumes plot")
    hierarchy.move_into(scene, out.folder, [n for n in out.nodes if n is not None])
    return out


def node_from_entry(scene, entry, segments):
    """One series item of a result (an image, labels or difference entry) as a synthetic node:
    a segmentation for labels, a volume otherwise."""
    image = sitk.ReadImage(entry["path"])
    if entry.get("role") == "labels":
        node = segmentation_node_from_labels(scene, image, segments, entry["name"])
    else:
        node = volume_node_from_image(scene, image, entry["name"])
    hierarchy.mark_synthetic(node, entry.get("provenance", {}))
    return node


def _remove_with_display(scene, node):
    displays = [node.GetNthDisplayNode(i) for i in range(node.GetNumberOfDisplayNodes())]
    storage = node.GetStorageNode() if hasattr(node, "GetStorageNode") else None
    scene.RemoveNode(node)
    for other in displays + [storage]:
        if other is not None and other.GetScene() is scene:
            scene.RemoveNode(other)


def largest_change(sequence):
    """The largest |difference| over every item of a difference sequence (one window for all ages,
    so scrubbing the age never rescales the colours)."""
    import numpy as np
    from vtk.util.numpy_support import vtk_to_numpy

    largest = 0.0
    for i in range(sequence.GetNumberOfDataNodes()):
        image = sequence.GetNthDataNode(i).GetImageData()
        if image is not None and image.GetPointData().GetScalars() is not None:
            values = vtk_to_numpy(image.GetPointData().GetScalars())
            if values.size:
                largest = max(largest, float(np.abs(values).max()))
    return largest


def centre_on_zero(scene, proxy, sequence):
    """Show a difference map in DivergingBlueRed with its window symmetric about zero (white: no
    change). The colour table is one of Slicer's defaults; a bare scene without it keeps grey."""
    display = proxy.GetDisplayNode() if proxy is not None else None
    if display is None:
        proxy.CreateDefaultDisplayNodes()
        display = proxy.GetDisplayNode()
    if scene.GetNodeByID(DIFFERENCE_COLOR_NODE) is not None:
        display.SetAndObserveColorNodeID(DIFFERENCE_COLOR_NODE)
    largest = largest_change(sequence) or 1.0
    display.AutoWindowLevelOff()
    display.SetWindowLevelMinMax(-largest, largest)


def summary(result):
    """What the panel says about a finished counterfactual/progression beyond its nodes: how well
    the scan was registered to the model's template (Dice) and the brain-mask volume if the
    result has one. Plain text lines."""
    lines = []
    provenance = result.get("provenance") or {}
    dice = (provenance.get("registration") or {}).get("dice")
    if dice is not None:  # foreground overlap; the library refuses a registration below its MIN_DICE
        lines.append(f"Registration to the model's template: Dice {float(dice):.2f}")
    extraction = provenance.get("brain_extraction") or {}
    if extraction.get("extracted") and extraction.get("mask_ml") is not None:
        method = f" by {extraction['method']}" if extraction.get("method") else ""
        lines.append(f"Brain mask{method}: {float(extraction['mask_ml']):.0f} mL (the change is confined to it)")
    return lines
