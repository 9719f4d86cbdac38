"""Networks from a card: the card names a MONAI class (from an allow-list) and its arguments."""

from SynthMedLib.networks.build import ALLOWED_CLASSES, build_network, build_networks, shrink_args

__all__ = ["ALLOWED_CLASSES", "build_network", "build_networks", "shrink_args"]
