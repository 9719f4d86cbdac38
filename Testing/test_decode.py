"""Whole vs tiled decoding: the tiles (core + halo, whole-volume group-norm statistics) match the
whole decode to float precision while no decoder forward sees more than one window.

Stated tolerance: relative RMS difference < 1e-4 (measured 6e-7) with the default halo (the
decoder's reach, 5 latent voxels here) and norm="volume". The cheaper variants are measured, not
hidden: per-tile norms differ by 35% RMS, a halo of 1 or 3 by 50% or 14% (random-weight decoder)."""

import threading

import pytest
import torch
from monai.networks.nets import AutoencoderKL

from SynthMedLib.errors import Cancelled
from SynthMedLib.sampling.decode import decode, decoder_reach, tiles
from SynthMedLib.sampling.progress import Progress

LATENT = (1, 3, 28, 4, 4)  # long along one axis so that windows are smaller than the volume


@pytest.fixture(scope="module")
def decoder():
    torch.manual_seed(0)
    network = AutoencoderKL(spatial_dims=3, in_channels=1, out_channels=2, channels=(8, 8), latent_channels=3,
                            num_res_blocks=1, norm_num_groups=4, attention_levels=(False, False),
                            with_encoder_nonlocal_attn=False, with_decoder_nonlocal_attn=False).eval()
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.05)
    return network


@pytest.fixture(scope="module")
def latent():
    coarse = torch.randn(1, 3, 7, 2, 2, generator=torch.Generator().manual_seed(1))
    return torch.nn.functional.interpolate(coarse, size=LATENT[2:], mode="trilinear") + 0.3 * torch.randn(
        LATENT, generator=torch.Generator().manual_seed(2))


def relative_rms(a, b):
    return float((a - b).pow(2).mean().sqrt() / b.std())


def test_tiles_partition_the_latent_with_halos_clipped_to_it():
    plan = tiles((10, 3), (4, 4), (2, 2))
    cores = [core for core, _ in plan]
    assert [c[0] for c in cores] == [slice(0, 4), slice(4, 8), slice(8, 10)]
    assert [w[0] for _, w in plan] == [slice(0, 6), slice(2, 10), slice(6, 10)]


def test_tiled_decode_matches_whole_decode_with_bounded_windows(decoder, latent):
    reach = decoder_reach(decoder, 3)
    assert 4 <= reach <= 8  # a 2-level MONAI decoder with one res block per level
    whole = decode(decoder, latent, scale_factor=0.5)
    seen = []
    hook = decoder.decoder.register_forward_pre_hook(lambda module, args: seen.append(tuple(args[0].shape[2:])))
    try:
        tiled = decode(decoder, latent, scale_factor=0.5, tile=4)
    finally:
        hook.remove()
    assert tiled.shape == whole.shape == (1, 2, 56, 8, 8)
    assert relative_rms(tiled, whole) < 1e-4
    # every forward saw at most one window (core 4 + 2 halos), never the 28-voxel volume
    assert max(s[0] for s in seen) <= 4 + 2 * reach < LATENT[2]


def test_cheaper_tiling_variants_are_approximate(decoder, latent):
    whole = decode(decoder, latent)
    per_tile_norms = relative_rms(decode(decoder, latent, tile=4, norm="tile"), whole)
    short_halo = relative_rms(decode(decoder, latent, tile=4, halo=1), whole)
    assert per_tile_norms > 1e-3 and short_halo > 1e-3


def test_decode_reports_progress_and_cancels(decoder, latent):
    events = []
    decode(decoder, latent, tile=8, progress=lambda *e: events.append(e))
    assert events[-1][0] == "decoding" and events[-1][1] == events[-1][2] > 4
    stop = threading.Event()

    def cancel_at_three(stage, step, total):
        if step == 3:
            stop.set()

    with pytest.raises(Cancelled):
        decode(decoder, latent, tile=4, progress=Progress(cancel_at_three, stop))
