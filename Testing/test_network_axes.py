"""The axis order of the tensors a card's networks see (``space.array_axes``).

The published MONAI bundles were trained on LoadImage's (x, y, z) arrays, the demo model on
SimpleITK's (z, y, x) numpy arrays. Getting it wrong gives no error, only a brain with left-right
and head-foot swapped, so these tests watch the tensors at the networks themselves, on a grid whose
three sizes differ."""

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from generate_fixtures import register_tiny_brain, tiny_brain_data
from SynthMedLib.cards import load_card
from SynthMedLib.model import Model
from SynthMedLib.pipelines.generate import generate
from SynthMedLib.pipelines.latent_io import image_to_tensor

CONDITIONS = {"age": 70, "sex": "F", "diagnosis": "CN"}
SIZE_XYZ = (16, 24, 32)


@pytest.fixture(scope="module", params=["xyz", "zyx"])
def model(request, tmp_path_factory):
    home = tmp_path_factory.mktemp(f"home-{request.param}")
    patcher = pytest.MonkeyPatch()
    patcher.setenv("SYNTHMED_HOME", str(home))
    data = tiny_brain_data()
    data["id"] = f"tiny-brain-{request.param}"
    data["space"].update(shape=list(SIZE_XYZ), array_axes=request.param)
    data["latent"]["shape"] = [n // 4 for n in SIZE_XYZ]
    register_tiny_brain(home / "source", data=data)
    yield request.param, Model.from_card(data["id"], needs="counterfactual")
    patcher.undo()


def _spatial(shape_xyz, axes):
    return tuple(shape_xyz) if axes == "xyz" else tuple(reversed(shape_xyz))


def test_the_networks_see_the_card_axis_order(model):
    axes, loaded = model
    seen = {}
    unet = loaded.networks["diffusion"]
    # (a pre-hook that returns something replaces the input: these return None)
    handle = unet.register_forward_pre_hook(lambda m, args: seen.update(unet=tuple(args[0].shape[2:])))
    try:
        [sample] = generate(loaded, CONDITIONS, count=1, seed=0, steps=2, progress=None)
    finally:
        handle.remove()
    assert seen["unet"] == _spatial([n // 4 for n in SIZE_XYZ], axes)
    assert sample.image.GetSize() == SIZE_XYZ and sample.labels.GetSize() == SIZE_XYZ


def test_the_decoder_first_spatial_axis_lands_on_the_card_first_axis(model):
    """A decoder output that grows along its first spatial axis must grow along x in the image
    for an 'xyz' card, along z for a 'zyx' card."""
    axes, loaded = model
    decoder = loaded.networks["autoencoder"].decoder

    def ramp(module, args, output):
        values = torch.arange(output.shape[2], dtype=output.dtype).view(1, 1, -1, 1, 1)
        return values.expand_as(output).clone()

    handle = decoder.register_forward_hook(ramp)
    try:
        [sample] = generate(loaded, CONDITIONS, count=1, seed=0, steps=2, progress=None)
    finally:
        handle.remove()
    image = sitk.GetArrayFromImage(sample.image)  # (z, y, x)
    along_x, along_z = np.diff(image[0, 0, :]), np.diff(image[:, 0, 0])
    grows, flat = (along_x, along_z) if axes == "xyz" else (along_z, along_x)
    assert np.all(grows > 0) and np.allclose(flat, 0)


def test_encoding_a_scan_hands_the_encoder_the_card_axis_order(model):
    axes, loaded = model
    card = load_card(loaded.card["id"])
    seen = {}
    encoder = loaded.networks["autoencoder"].encoder
    handle = encoder.register_forward_pre_hook(lambda m, args: seen.update(x=args[0][0, 0].clone()))
    grid = sitk.Image(list(SIZE_XYZ), sitk.sitkFloat32)
    grid.SetSpacing(card["space"]["spacing"])
    scan = sitk.GetImageFromArray(np.random.default_rng(0).random(SIZE_XYZ[::-1], dtype=np.float32))
    scan.CopyInformation(grid)
    try:
        tensor = image_to_tensor(scan, card)
        loaded.networks["autoencoder"].encode(tensor)
    finally:
        handle.remove()
    expected = sitk.GetArrayFromImage(scan)
    expected = expected.transpose(2, 1, 0) if axes == "xyz" else expected
    assert tuple(seen["x"].shape) == _spatial(SIZE_XYZ, axes)
    np.testing.assert_array_equal(seen["x"].numpy(), expected)
