"""Model-level weights operations behind ``synthmed models fetch`` and ``synthmed models verify``."""

from SynthMedLib.cards import load_card
from SynthMedLib.errors import SynthMedError, WeightsError
from SynthMedLib.weights import cache, hashing
from SynthMedLib.weights.download import download


def _weights_names(card, pipeline=None):
    if pipeline:
        return list(dict.fromkeys(card.networks[n].weights for n in card.networks_for(pipeline)))
    return list(card.weights)


def fetch_model(card, pipeline=None, progress=None, cancel=None, show_bar=True, retries=2):
    """Download every missing weights file of ``card`` into the cache.

    Returns [(weights name, path, "present" | "downloaded")]. ``progress(name, done, total)``.
    """
    card = load_card(card)
    results = []
    for name in _weights_names(card, pipeline):
        spec = card.weights[name]
        existing = cache.find_weights(card, name)
        if existing is not None and _matches(existing, spec):
            results.append((name, existing, "present"))
            continue
        if not spec.get("url"):
            where = (f"download it in a browser from {spec['download_page']}"
                     if spec.get("download_page") else "obtain it from the authors")
            raise WeightsError(f"model '{card.id}' publishes no download URL a program can follow "
                               f"for '{name}' ({spec['file']}): {where}, then import it with "
                               f"'synthmed models add {card.id} --weights FILE'")
        target = cache.download_target(card, name)
        report = (lambda done, total, _n=name: progress(_n, done, total)) if progress else None
        download(spec["url"], target, sha256=spec.get("sha256"), md5=spec.get("md5"),
                 size=spec.get("size"), progress=report, cancel=cancel, show_bar=show_bar,
                 retries=retries)
        results.append((name, target, "downloaded"))
    return results


def _matches(path, spec):
    if spec.get("size") and path.stat().st_size != spec["size"]:
        return False
    if spec.get("sha256"):
        return hashing.sha256(path) == spec["sha256"]
    if spec.get("md5"):
        return hashing.digest(path, "md5") == spec["md5"]
    return True


def verify_model(card, check_architecture=True):
    """One row per weights file: {name, file, path, status, detail, sha256}.

    status: "ok", "missing", "mismatch" (size/checksum), "invalid" (unreadable or not matching
    the card's architecture) or "unverified" (present and loadable, but the card has no checksum).
    """
    card = load_card(card)
    rows = []
    for name, spec in card.weights.items():
        row = {"name": name, "file": spec["file"], "path": None, "sha256": None}
        path = cache.find_weights(card, name)
        if path is None:
            row.update(status="missing", detail=f"not in {cache.download_target(card, name).parent}")
            rows.append(row)
            continue
        row["path"] = str(path)
        row.update(_check_file(card, name, spec, path, check_architecture))
        rows.append(row)
    return rows


def _check_file(card, name, spec, path, check_architecture):
    wrong = hashing.mismatch(path, spec)
    if wrong and wrong[0] == "size":
        return {"status": "mismatch", "detail": f"{wrong[1]} bytes, the card says {wrong[2]}"}
    result = {"sha256": hashing.sha256(path)}
    if wrong:
        return {**result, "status": "mismatch", "detail": f"{wrong[0]} {wrong[1]}, the card says {wrong[2]}"}
    if check_architecture:
        try:
            _check_architecture(card, name, path)
        except SynthMedError as error:
            return {**result, "status": "invalid", "detail": str(error)}
    verified = spec.get("sha256") or spec.get("md5")
    return {**result, "status": "ok" if verified else "unverified",
            "detail": "checksum and architecture match" if verified
            else "loads and matches the architecture; the card has no checksum to compare"}


def _check_architecture(card, weights_name, path):
    """Read the file safely and check its keys against every network that uses it."""
    import torch

    from SynthMedLib.networks import build_network
    from SynthMedLib.weights.load import check_keys, state_dict_for
    from SynthMedLib.weights.safe_load import read_checkpoint

    checkpoint = read_checkpoint(path)
    for network_name, spec in card.networks.items():
        if spec.weights != weights_name:
            continue
        # The meta device gives every parameter's shape without allocating memory, so verifying
        # a 2 GB UNet costs a file read, not a second copy of the model.
        with torch.device("meta"):
            network = build_network(card, network_name, device="cpu")
        where = f"{path} ({card.id}/{network_name})"
        check_keys(network, state_dict_for(card, network_name, network, checkpoint, where), where)
