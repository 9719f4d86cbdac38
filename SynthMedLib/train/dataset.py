"""The training set: simulated cohort subjects rendered at several ages on the card's grid,
normalised as the card says, cached on disk once.

The cache is a folder named by a hash of everything that determines its content (cohort seeds,
ages, grid, normalisation), so two configs never share a stale cache and a rebuild is never
needed by hand. Items are written one file each as they are rendered (an interrupted build
resumes), then packed into two .npy arrays that training memory-maps.
"""

import hashlib
import json
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm


def subjects_and_ages(dataset):
    """[(subject, age)] for the dataset config: ``subjects`` cohort subjects from ``seed``,
    each at baseline + every ``age_offsets`` entry that stays within ``min_age``-``max_age``."""
    from SynthMedLib.cohort import population

    subjects = population(int(dataset["subjects"]), int(dataset["seed"]),
                          diagnosis=dataset.get("diagnosis", "mixed"))
    min_age, max_age = float(dataset.get("min_age", 50)), float(dataset.get("max_age", 95))
    items = []
    for subject in subjects:
        for offset in dataset.get("age_offsets", [0]):
            age = round(float(subject.baseline_age) + float(offset), 2)
            if min_age <= age <= max_age:
                items.append((subject, age))
    return items


def cache_key(dataset, card):
    # The cohort's model version is part of the key: a changed aging/appearance model must not be
    # served from a cache rendered by the old one (the demo's first training data was).
    from SynthMedLib.cohort import MODEL_VERSION

    content = {"dataset": {k: dataset[k] for k in sorted(dataset) if k not in ("cache_dir", "workers")},
               "space": card["space"], "format": 2, "cohort": MODEL_VERSION}
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]


def _render_item(job):
    subject, age, grid_info, intensity, path = job
    import SimpleITK as sitk
    import torch

    from SynthMedLib.cohort import render
    from SynthMedLib.spaces.intensity import fit_intensity

    # One thread per worker process: the workers already use every core between them.
    torch.set_num_threads(1)
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    size, spacing, origin, direction = grid_info
    grid = sitk.Image(size, sitk.sitkFloat32)
    grid.SetSpacing(spacing)
    grid.SetOrigin(origin)
    grid.SetDirection(direction)
    rendering = render(subject, age, grid=grid)
    image = sitk.GetArrayFromImage(rendering.image).astype(np.float64)
    labels = sitk.GetArrayFromImage(rendering.labels).astype(np.uint8)
    normalised = fit_intensity(image, intensity).to_model(image).astype(np.float32)
    tmp = f"{path}.tmp.npz"
    volumes = {k: float(v) for k, v in rendering.volumes.items()}
    np.savez(tmp, image=normalised, labels=labels, volumes=json.dumps(volumes))
    os.replace(tmp, path)


def build_cache(dataset, card, progress=True):
    """Render (or reuse) the dataset a config describes; returns its folder."""
    root = Path(dataset.get("cache_dir", "runs/cache")) / f"{card['id']}-{cache_key(dataset, card)}"
    if (root / "meta.json").exists():
        return root
    build_items(root, subjects_and_ages(dataset), card, int(dataset.get("workers", 1)), progress)
    return root


def build_items(root, items, card, workers=1, progress=True, description="render cohort"):
    """Render [(subject, age)] on the card's grid into dataset folder ``root`` (reused when it
    is complete; an interrupted build continues). Returns the CohortData."""
    from SynthMedLib.spaces.model_space import ModelSpace

    root = Path(root)
    if (root / "meta.json").exists():
        return CohortData(root)
    (root / "items").mkdir(parents=True, exist_ok=True)
    grid = ModelSpace.from_card(card).grid()
    grid_info = (grid.GetSize(), grid.GetSpacing(), grid.GetOrigin(), grid.GetDirection())
    intensity = card["space"]["intensity"]
    jobs = [(s, a, grid_info, intensity, str(root / "items" / f"{i:05d}.npz"))
            for i, (s, a) in enumerate(items)]
    todo = [i for i, job in enumerate(jobs) if not Path(job[4]).exists()]
    bar = tqdm(total=len(jobs), initial=len(jobs) - len(todo), desc=description,
               unit="volume", disable=not progress)
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            for _ in pool.map(_render_item, [jobs[i] for i in todo]):
                bar.update(1)
    else:
        for i in todo:
            _render_item(jobs[i])
            bar.update(1)
    bar.close()

    def item_arrays():
        for job in jobs:
            with np.load(job[4]) as item:
                yield item["image"], item["labels"]

    volumes = []
    for job in jobs:
        with np.load(job[4]) as item:
            volumes.append(json.loads(str(item["volumes"])))
    meta = [{"index": i, "seed": int(s.seed), "sex": s.sex, "diagnosis": s.diagnosis,
             "baseline_age": float(s.baseline_age), "age": a, "volumes": volumes[i]}
            for i, (s, a) in enumerate(items)]
    write_dataset(root, item_arrays(), meta, tuple(reversed(grid.GetSize())))
    for job in jobs:
        Path(job[4]).unlink(missing_ok=True)
    return CohortData(root)


def write_dataset(folder, items, meta, shape):
    """Write a dataset folder: ``items`` yields (image, labels) arrays of ``shape`` (numpy order),
    ``meta`` one dict per item (index, seed, sex, diagnosis, age, ...). Also the format for
    training on one's own data (dataset config ``{"folder": ...}``)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    images = np.lib.format.open_memmap(folder / "images.tmp.npy", "w+", np.float32, (len(meta), *shape))
    labels = np.lib.format.open_memmap(folder / "labels.tmp.npy", "w+", np.uint8, (len(meta), *shape))
    for i, (image, label) in enumerate(items):
        images[i], labels[i] = image, label
    images.flush()
    labels.flush()
    del images, labels
    os.replace(folder / "images.tmp.npy", folder / "images.npy")
    os.replace(folder / "labels.tmp.npy", folder / "labels.npy")
    (folder / "meta.tmp.json").write_text(json.dumps(meta, indent=0))
    os.replace(folder / "meta.tmp.json", folder / "meta.json")
    return folder


def load_dataset(dataset, card, progress=True):
    """The dataset a config names: a prepared folder, or the simulated cohort (rendered once)."""
    if dataset.get("folder"):
        return CohortData(dataset["folder"])
    return CohortData(build_cache(dataset, card, progress=progress))


class CohortData:
    """The cached arrays: ``images`` (N, D, H, W) float32 in the card's range, ``labels`` (N, D, H,
    W) uint8, ``meta`` (subject seed, sex, diagnosis, ages, volumes) per item."""

    def __init__(self, folder):
        folder = Path(folder)
        self.folder = folder
        self.images = np.load(folder / "images.npy", mmap_mode="r")
        self.labels = np.load(folder / "labels.npy", mmap_mode="r")
        self.meta = json.loads((folder / "meta.json").read_text())

    def __len__(self):
        return len(self.meta)
