"""Decoder peak memory, whole vs tiled, side by side: the tiled decode's peak should follow the tile
(core + halo), not the volume, and its image should equal the whole decode's.

Peak resident memory above the start of each method (Linux VmHWM, reset before each), wall time,
and the relative RMS difference to the whole decode. The card's autoencoder with random weights at
its full image size (reduced widths on a CPU; say which).

    .venv/bin/python bench/decode_memory.py --model brainldm-ukb --tile 8 --ae-channels 8,16,16,16
"""

import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.dirname(__file__))

from sampler_benchmark import peak_rss_mb, reset_peak  # noqa: E402
from SynthMedLib.cards import load_card  # noqa: E402
from SynthMedLib.networks import build_network  # noqa: E402
from SynthMedLib.sampling.decode import decode, decoder_reach  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="brainldm-ukb")
    parser.add_argument("--tile", type=int, default=8, help="core tile size in latent voxels")
    parser.add_argument("--ae-channels", default="8,16,16,16")
    parser.add_argument("--norms", nargs="+", default=["tile", "volume"], choices=["tile", "volume"])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    card = load_card(args.model)
    torch.manual_seed(0)
    widths = [int(v) for v in args.ae_channels.split(",")]
    autoencoder = build_network(card, "autoencoder", channels=widths, device="cpu").eval()
    with torch.no_grad():
        for parameter in autoencoder.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.02)
    latent = torch.randn((1, card.latent.channels) + tuple(reversed(card.latent.shape)),
                         generator=torch.Generator().manual_seed(0))
    reach = decoder_reach(autoencoder, latent.shape[1])
    print(f"{card.id} autoencoder widths {widths} (published {card.networks['autoencoder'].channels}),"
          f" latent {tuple(latent.shape[2:])}, decoder reach {reach} latent voxels, tile {args.tile}"
          f" (+ halo {reach}); torch threads {args.threads}\n")
    print("| decode | wall s | peak RSS MB | peak vs whole | relative RMS vs whole |")
    print("|---|---|---|---|---|")
    whole = None
    for name, kwargs in [("whole", {})] + [(f"tiled, norm={n}", {"tile": args.tile, "norm": n}) for n in args.norms]:
        base = reset_peak()
        start = time.perf_counter()
        image = decode(autoencoder, latent, **kwargs)
        seconds, peak = time.perf_counter() - start, peak_rss_mb() - base
        if whole is None:
            whole, whole_peak = image, peak
        error = float((image - whole).pow(2).mean().sqrt() / whole.std())
        print(f"| {name} | {seconds:.1f} | {peak:.0f} | {peak / whole_peak:.2f}x | {error:.1e} |", flush=True)
        del image


if __name__ == "__main__":
    with torch.no_grad():
        main()
