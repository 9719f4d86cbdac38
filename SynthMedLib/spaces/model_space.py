"""The model space a card describes: grid (shape, spacing, orientation, origin), registration
template and intensity normalisation.

Cards give world coordinates the way neuroimaging papers and MNI do (RAS, millimetres, NIfTI
convention: ``orientation: "RAS"`` means voxel axes increase towards Right, Anterior, Superior and
``origin`` is the RAS position of voxel (0, 0, 0)). SimpleITK works in LPS, so the conversion
happens here and nowhere else.
"""

from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk

from SynthMedLib.errors import CardError

# Centre (RAS mm) of the brain box in MNI space; a card without an origin is centred here. The
# simulated cohort's model grid (SynthMedLib/cohort/grid.py) uses the same centre, so a card
# without an origin still lines up with the data the demo model was trained on.
MNI_BRAIN_CENTRE_RAS = (0.0, -17.0, 8.0)
_AXIS_VECTORS = {"R": (1, 0, 0), "L": (-1, 0, 0), "A": (0, 1, 0), "P": (0, -1, 0),
                 "S": (0, 0, 1), "I": (0, 0, -1)}
_RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0])


def _get(container, key, default=None):
    """Cards may arrive as dicts or as objects from the card loader."""
    if container is None:
        return default
    if isinstance(container, dict):
        return container.get(key, default)
    return getattr(container, key, default)


@dataclass(frozen=True)
class ModelSpace:
    shape: tuple                       # (x, y, z) voxels, SimpleITK size order
    spacing: tuple                     # mm
    orientation: str = "RAS"           # where the voxel axes point (NIfTI convention)
    origin_ras: tuple = None           # RAS mm of voxel (0,0,0); None: centred on the brain
    template: str = "mni152"
    intensity: dict = field(default_factory=lambda: {"method": "percentile", "lower": 0.5,
                                                     "upper": 99.5, "range": [0, 1]})

    @classmethod
    def from_card(cls, card):
        space = _get(card, "space")
        if space is None:
            raise CardError(f"Card {_get(card, 'id', '?')!r} has no 'space' section; "
                            "counterfactual and progression need a model space.")
        shape = tuple(int(v) for v in _get(space, "shape"))
        spacing = _get(space, "spacing")
        spacing = tuple(float(v) for v in (spacing if np.ndim(spacing) else [spacing] * 3))
        origin = _get(space, "origin")
        intensity = _get(space, "intensity")
        if intensity is not None and not isinstance(intensity, dict):
            intensity = dict(vars(intensity))
        return cls(shape=shape, spacing=spacing,
                   orientation=str(_get(space, "orientation", "RAS")).upper(),
                   origin_ras=None if origin is None else tuple(float(v) for v in origin),
                   template=str(_get(space, "template", "mni152") or "none").lower(),
                   intensity=intensity or cls.__dataclass_fields__["intensity"].default_factory())

    def direction_lps(self):
        try:
            columns = [_AXIS_VECTORS[letter] for letter in self.orientation]
        except KeyError:
            raise CardError(f"Card orientation {self.orientation!r} is not three of R/L/A/P/S/I.") from None
        direction_ras = np.array(columns, dtype=float).T
        if abs(np.linalg.det(direction_ras)) != 1:
            raise CardError(f"Card orientation {self.orientation!r} repeats an axis.")
        return _RAS_TO_LPS @ direction_ras

    def origin_lps(self):
        direction = self.direction_lps()
        if self.origin_ras is not None:
            return _RAS_TO_LPS @ np.asarray(self.origin_ras)
        centre = _RAS_TO_LPS @ np.asarray(MNI_BRAIN_CENTRE_RAS)
        half_extent = (np.asarray(self.shape) - 1) / 2.0 * np.asarray(self.spacing)
        return centre - direction @ half_extent

    def grid(self):
        """An empty float32 reference image of the model-space grid."""
        image = sitk.Image([int(v) for v in self.shape], sitk.sitkFloat32)
        image.SetSpacing(self.spacing)
        image.SetDirection(tuple(self.direction_lps().ravel()))
        image.SetOrigin(tuple(self.origin_lps()))
        return image


def same_grid(a, b, tolerance=1e-4):
    """True when two images share size, spacing, origin and direction (to ``tolerance``)."""
    return (a.GetSize() == b.GetSize()
            and np.allclose(a.GetSpacing(), b.GetSpacing(), atol=tolerance)
            and np.allclose(a.GetOrigin(), b.GetOrigin(), atol=tolerance)
            and np.allclose(a.GetDirection(), b.GetDirection(), atol=tolerance))
