"""Native scan <-> model space: input checks, affine registration to the card's template,
resampling onto the model grid, intensity normalisation, and the way back onto the input's grid."""

from SynthMedLib.spaces.checks import check_image
from SynthMedLib.spaces.intensity import IntensityMapping, fit_intensity
from SynthMedLib.spaces.mapping import NativeMapping, to_model_space
from SynthMedLib.spaces.model_space import ModelSpace, same_grid
from SynthMedLib.spaces.registration import register_affine
from SynthMedLib.spaces.template import template_image

__all__ = ["check_image", "IntensityMapping", "fit_intensity", "NativeMapping", "to_model_space",
           "ModelSpace", "same_grid", "register_affine", "template_image"]
