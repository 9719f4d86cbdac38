"""A PNG montage of renderings: mid axial, coronal and sagittal slices with the label map over
them, one column per age, so a user can see the cohort (and its aging) at a glance."""

import numpy as np
import SimpleITK as sitk

from SynthMedLib.cohort.tissues import LABELS

LABEL_COLOURS = {1: (0.15, 0.45, 1.0), 2: (0.55, 0.85, 1.0), 3: (1.0, 0.55, 0.1), 4: (0.95, 0.95, 0.3)}
VIEWS = ("axial", "coronal", "sagittal")


def _slices(image):
    """Mid slices in radiological display: axial/coronal with the patient's left on the right."""
    array = sitk.GetArrayFromImage(sitk.DICOMOrient(image, "LPS"))  # (S, P, L) index order
    z, y, x = (n // 2 for n in array.shape)
    return {
        "axial": array[z],  # rows posterior-ward: anterior at the top
        "coronal": array[:, y][::-1],  # superior at the top
        "sagittal": array[:, :, x][::-1],  # superior at the top, anterior on the left
    }


def write_montage(path, renderings_by_subject, title="SynthMed simulated cohort (synthetic)"):
    """``renderings_by_subject``: [[Rendering at each age] for each subject] -> PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    colours = ListedColormap([LABEL_COLOURS[k] for k in sorted(LABEL_COLOURS)])
    rows = len(renderings_by_subject) * len(VIEWS)
    columns = max(len(r) for r in renderings_by_subject)
    figure, axes = plt.subplots(rows, columns, figsize=(2.2 * columns, 2.2 * rows), squeeze=False)
    for s, renderings in enumerate(renderings_by_subject):
        for c, rendering in enumerate(renderings):
            images, labels = _slices(rendering.image), _slices(rendering.labels)
            high = float(np.percentile(sitk.GetArrayViewFromImage(rendering.image), 99.5))
            for v, view in enumerate(VIEWS):
                axis = axes[s * len(VIEWS) + v, c]
                axis.imshow(images[view], cmap="gray", vmin=0.0, vmax=high, interpolation="nearest")
                overlay = np.ma.masked_equal(labels[view], 0)
                axis.imshow(overlay, cmap=colours, vmin=0.5, vmax=len(LABEL_COLOURS) + 0.5,
                            alpha=0.3, interpolation="nearest")
                axis.set_xticks([])
                axis.set_yticks([])
                if s == 0 and v == 0:
                    axis.set_title(f"age {rendering.age:g}")
                if c == 0:
                    subject = rendering.subject
                    axis.set_ylabel(f"{subject.participant_id} {subject.sex} {subject.diagnosis}\n{view}",
                                    fontsize=8)
                if v == 0:
                    ventricles = rendering.volumes["ventricles_ml"]
                    axis.text(2, 6, f"vent {ventricles:.0f} mL", color="white", fontsize=7, va="top")
    handles = [Patch(color=LABEL_COLOURS[k], label=name) for k, name in LABELS.items()]
    figure.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8)
    figure.suptitle(title)
    figure.tight_layout(rect=(0, 0.03, 1, 0.97))
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
