"""Manual check (not collected by pytest: ~3 min, ~10 GB): the published BrainLDM networks at
full size, old ``generative`` package vs today's MONAI through SynthMed's conversion, random
weights, same inputs. Prints the largest absolute difference of each output.

    .venv/bin/python Testing/legacy_full_size_check.py
"""

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from SynthMedLib.cards import load_card  # noqa: E402
from SynthMedLib.networks import build_network  # noqa: E402
from SynthMedLib.weights.legacy_generative import convert_state_dict  # noqa: E402
from test_legacy_generative import old_network, randomise  # noqa: E402


def main():
    torch.set_num_threads(2)
    card = load_card("brainldm-ukb")
    for name in ("autoencoder", "diffusion"):
        spec = card.networks[name]
        start = time.time()
        old = randomise(old_network(spec.class_name, card.network_args(name)), 0)
        new = build_network(card, name, device="cpu").eval()
        new.load_state_dict(convert_state_dict(old.state_dict(), new), strict=True)
        with torch.no_grad():
            if name == "autoencoder":
                z = torch.randn(1, 3, 10, 14, 10)
                a, b = old.decode_stage_2_outputs(z), new.decode_stage_2_outputs(z)
            else:
                x, t, c = torch.randn(1, 7, 20, 28, 20), torch.tensor([500]), torch.rand(1, 1, 4)
                a, b = old(x, t, context=c), new(x, t, context=c)
        params = sum(p.numel() for p in new.parameters()) / 1e6
        print(f"brainldm-ukb {name:12s} {params:6.1f} M params  max |old-new| "
              f"{(a - b).abs().max().item():.2e}  (max |old| {a.abs().max().item():.2f})  "
              f"{time.time() - start:.0f} s", flush=True)
        del old, new


if __name__ == "__main__":
    main()
