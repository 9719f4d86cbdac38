"""Import a weights file the user downloaded by hand (``synthmed models add MODEL --weights FILE``).

Some authors publish weights behind links only a browser can follow (BrLP: SharePoint pages);
the card then says where (``download_page``). The file is placed where ``fetch`` would have put
it, but only after it proved to be the right one: its keys and shapes match the architecture of
the network that uses it (which also tells which of the card's weights it is, whatever the file
is called), and its sha256 / md5 / size match the card where the card knows them. The user's file
is copied, never moved or changed; the copy lands atomically.
"""

import os
from pathlib import Path

from SynthMedLib.cards import load_card
from SynthMedLib.errors import SynthMedError, WeightsError
from SynthMedLib.storage import atomic
from SynthMedLib.weights import cache, hashing


def import_weights(model, files, name=None, force=False):
    """Check each of ``files`` against ``model``'s card and copy it into the cache.

    ``name``: which weights of the card the (single) file is; default: the one whose architecture
    it matches. Returns [{name, file, path, sha256, checked}] per file, ``checked`` saying what was
    verified. A WeightsError names what did not match; nothing is copied for that file.
    """
    card = load_card(model)
    files = [Path(f).expanduser() for f in ([files] if isinstance(files, (str, os.PathLike)) else files)]
    if name is not None and len(files) != 1:
        raise WeightsError("--as names the weights of one file; import the files one by one")
    if name is not None and name not in card.weights:
        raise WeightsError(f"model '{card.id}' has no weights '{name}' (it has: {', '.join(card.weights)})")
    rows = []
    for path in files:
        if not path.is_file():
            raise WeightsError(f"{path} is not a file")
        slot = _which_weights(card, path, [name] if name else list(card.weights))
        spec = card.weights[slot]
        _check_container(path, spec["file"])
        sha = hashing.sha256(path)
        checked = ["architecture"] + _check_digests(slot, spec, path)
        target = cache.download_target(card, slot)
        existing = cache.find_weights(card, slot)
        if existing is not None and existing.resolve() != path.resolve() and not force \
                and hashing.sha256(existing) != sha:
            raise WeightsError(f"model '{card.id}' already has other '{slot}' weights in {existing}: "
                               f"use --force to replace them")
        if target.resolve() != path.resolve():
            atomic.copy_file(path, target)  # the one atomic, checked writer (storage/atomic.py)
        rows.append({"name": slot, "file": str(path), "path": str(target), "sha256": sha,
                     "checked": checked})
    return rows


def _which_weights(card, path, candidates):
    """The one weights name among ``candidates`` whose networks ``path`` fits."""
    import torch

    from SynthMedLib.networks import build_network
    from SynthMedLib.weights.load import check_keys, state_dict_for
    from SynthMedLib.weights.safe_load import read_checkpoint

    checkpoint = read_checkpoint(path)  # never unpickles code
    fits, reasons = [], []
    for slot in candidates:
        users = [n for n, spec in card.networks.items() if spec.weights == slot]
        try:
            for network_name in users:
                # meta device: every parameter's name and shape, no memory for the values
                with torch.device("meta"):
                    network = build_network(card, network_name, device="cpu")
                where = f"{path.name} as '{slot}' ({card.id}/{network_name})"
                check_keys(network, state_dict_for(card, network_name, network, checkpoint, where), where)
        except SynthMedError as error:
            reasons.append(str(error))
            continue
        fits.append(slot)
    if len(fits) == 1:
        return fits[0]
    if not fits:
        raise WeightsError(f"{path} matches none of the weights of model '{card.id}' "
                           f"({', '.join(candidates)}):\n  " + "\n  ".join(reasons))
    raise WeightsError(f"{path} fits the architecture of several weights of '{card.id}' "
                       f"({', '.join(fits)}): say which with --as")


def _check_container(path, card_file):
    """A file named .safetensors must be one: torch.load reads a file by that name as safetensors."""
    from SynthMedLib.weights.safe_load import detect_format

    is_safetensors = detect_format(path) == "safetensors"
    if card_file.endswith(".safetensors") != is_safetensors:
        raise WeightsError(f"{path} is {'a safetensors' if is_safetensors else 'a PyTorch'} file but the "
                           f"card names it {card_file}: the card and the file disagree on the format")


def _check_digests(slot, spec, path):
    wrong = hashing.mismatch(path, spec)
    if wrong and wrong[0] == "size":
        raise WeightsError(f"{path}: {wrong[1]} bytes, the card's '{slot}' has "
                           f"{wrong[2]}: another version of the file?")
    if wrong:
        raise WeightsError(f"{path}: {wrong[0]} {wrong[1]}, the card's '{slot}' says "
                           f"{wrong[2]}: another version of the file, or damaged")
    return [what for what in ("size", "sha256", "md5") if spec.get(what)]
