"""Does synthetic data help a model? Train a small segmentation network on (a) k real subjects,
(b) k real + m synthetic, (c) m synthetic only, and score Dice per tissue on held-out real ones.

Datasets are folders of image + label map pairs: every ``*_T1w.nii.gz`` (or ``--image-suffix``)
beside its ``*_dseg.nii.gz``, at any depth (the layouts of ``synthmed cohort``, ``synthmed generate``
and ``synthmed dataset``). Everything is resampled onto the first test image's grid so that real
and synthetic scans reach the network alike; intensities are scaled per image to [0, 1] between
the 0.5th and 99.5th percentiles (as the demo model's space does).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from SynthMedLib.errors import InputError
from SynthMedLib.sampling.progress import Progress


@dataclass
class Pair:
    image: np.ndarray           # (Z, Y, X) float32 in [0, 1]
    labels: np.ndarray          # (Z, Y, X) int64
    name: str


@dataclass
class Setting:
    name: str                   # e.g. "real k=4"
    real: int
    synthetic: int


@dataclass
class TrainConfig:
    steps: int = 300
    batch_size: int = 2
    learning_rate: float = 2e-3
    channels: tuple = (8, 16, 32)
    threads: int = 1


@dataclass
class SettingResult:
    setting: Setting
    # seed -> test subject -> label -> Dice
    dice: dict = field(default_factory=dict)


def find_pairs(folder: str | Path, image_suffix: str = "T1w") -> list[tuple[Path, Path]]:
    folder = Path(folder)
    pairs = []
    for image in sorted(folder.rglob(f"*_{image_suffix}.nii.gz")):
        labels = image.with_name(image.name.replace(f"_{image_suffix}.nii.gz", "_dseg.nii.gz"))
        if labels.is_file():
            pairs.append((image, labels))
    if not pairs:
        raise InputError(f"{folder} holds no *_{image_suffix}.nii.gz with a *_dseg.nii.gz beside it")
    return pairs


def load_pairs(paths, reference=None) -> tuple[list[Pair], object]:
    """Read (strictly: a truncated file or NaN voxels are refused), resample onto ``reference``
    (default: the first image's grid) and normalise."""
    import SimpleITK as sitk

    from SynthMedLib.spaces.intensity import fit_intensity
    from SynthMedLib.storage.reading import read_image

    loaded = []
    for image_path, labels_path in paths:
        image = sitk.Cast(read_image(str(image_path)), sitk.sitkFloat32)
        labels = read_image(str(labels_path))
        if reference is None:
            reference = image
        image = sitk.Resample(image, reference, sitk.Transform(), sitk.sitkLinear, 0.0)
        labels = sitk.Resample(labels, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
        array = sitk.GetArrayFromImage(image)
        # Percentiles of the whole field of view (not the head's foreground): synthetic and real
        # scans of one grid are then scaled alike whatever their backgrounds.
        mapping = fit_intensity(array, None, mask=np.ones(array.shape, bool))
        loaded.append(Pair(mapping.to_model(array).astype(np.float32),
                           sitk.GetArrayFromImage(labels).astype(np.int64), Path(image_path).name))
    return loaded, reference


def _pad_shape(shape, multiple):
    return tuple(int(math.ceil(s / multiple) * multiple) for s in shape)


def _to_tensor(arrays, shape):
    import torch

    batch = np.zeros((len(arrays), 1, *shape), dtype=arrays[0].dtype)
    for i, a in enumerate(arrays):
        batch[i, 0, : a.shape[0], : a.shape[1], : a.shape[2]] = a
    return torch.from_numpy(batch)


def train_and_score(train: list[Pair], test: list[Pair], labels: list[int], config: TrainConfig, seed: int,
                    progress: Progress | None = None) -> dict:
    """Train a MONAI UNet on ``train`` from ``seed``; Dice per label on each test subject."""
    import torch
    from monai.losses import DiceCELoss
    from monai.metrics import compute_dice
    from monai.networks.nets import UNet

    torch.manual_seed(seed)
    generator = np.random.default_rng(seed)
    classes = max(labels) + 1
    levels = len(config.channels)
    shape = _pad_shape(test[0].image.shape, 2 ** (levels - 1))
    network = UNet(spatial_dims=3, in_channels=1, out_channels=classes, channels=config.channels,
                   strides=(2,) * (levels - 1), num_res_units=1)
    optimiser = torch.optim.Adam(network.parameters(), lr=config.learning_rate)
    loss_function = DiceCELoss(to_onehot_y=True, softmax=True)
    network.train()
    for _ in range(config.steps):
        if progress is not None:
            progress.check()
        chosen = generator.choice(len(train), size=min(config.batch_size, len(train)), replace=False)
        images = _to_tensor([train[i].image for i in chosen], shape)
        targets = _to_tensor([train[i].labels for i in chosen], shape)
        # A random flip along x: the cohort is left-right symmetric enough, and it doubles few subjects.
        if generator.random() < 0.5:
            images, targets = images.flip(-1), targets.flip(-1)
        optimiser.zero_grad()
        loss = loss_function(network(images), targets)
        loss.backward()
        optimiser.step()
    network.eval()
    scores = {}
    with torch.no_grad():
        for pair in test:
            logits = network(_to_tensor([pair.image], shape))
            predicted = logits.argmax(1, keepdim=True)
            truth = _to_tensor([pair.labels], shape)
            onehot_p = torch.nn.functional.one_hot(predicted[:, 0], classes).permute(0, 4, 1, 2, 3)
            onehot_t = torch.nn.functional.one_hot(truth[:, 0], classes).permute(0, 4, 1, 2, 3)
            dice = compute_dice(onehot_p.float(), onehot_t.float(), include_background=True)[0]
            scores[pair.name] = {label: float(dice[label]) for label in labels}
    return scores


def settings_for(ks: list[int], m: int) -> list[Setting]:
    settings = [Setting(f"real k={k}", k, 0) for k in ks]
    settings += [Setting(f"real k={k} + synthetic m={m}", k, m) for k in ks]
    settings.append(Setting(f"synthetic m={m}", 0, m))
    return settings


def run_experiment(real: list[Pair], synthetic: list[Pair], test: list[Pair], labels: list[int], ks: list[int],
                   m: int, seeds: list[int], config: TrainConfig, progress=None) -> list[SettingResult]:
    """Every setting with every seed. Seed s picks the same real subjects for every setting, so
    (a) and (b) differ only by the synthetic scans added."""
    if max(ks) > len(real):
        raise InputError(f"k={max(ks)} real subjects asked, the real dataset has {len(real)}")
    if m > len(synthetic):
        raise InputError(f"m={m} synthetic scans asked, the synthetic dataset has {len(synthetic)}")
    results = []
    settings = settings_for(ks, m)
    progress = Progress.wrap(progress)
    total, done = len(settings) * len(seeds), 0
    progress.start("train", total)
    for setting in settings:
        result = SettingResult(setting)
        for seed in seeds:
            order = np.random.default_rng([seed, 1]).permutation(len(real))
            picked = [real[i] for i in order[: setting.real]]
            synth_order = np.random.default_rng([seed, 2]).permutation(len(synthetic))
            picked += [synthetic[i] for i in synth_order[: setting.synthetic]]
            result.dice[seed] = train_and_score(picked, test, labels, config, seed, progress)
            done += 1
            progress.step("train", done, total)
        results.append(result)
    progress.close()
    return results


def per_subject_mean(result: SettingResult, labels: list[int]) -> dict:
    """test subject -> Dice averaged over seeds and labels (the unit of the paired test)."""
    subjects = next(iter(result.dice.values())).keys()
    return {s: float(np.mean([result.dice[seed][s][label] for seed in result.dice for label in labels]))
            for s in subjects}


def summarise(results: list[SettingResult], labels: list[int], names: dict) -> dict:
    """Mean ± sd over seeds (of the test-set mean) per tissue, and paired tests of (b) vs (a)."""
    from scipy import stats

    table = []
    for result in results:
        row = {"setting": result.setting.name, "real": result.setting.real, "synthetic": result.setting.synthetic}
        for label in labels + ["mean"]:
            per_seed = [np.mean([scores[label] if label != "mean" else np.mean([scores[x] for x in labels])
                                 for scores in result.dice[seed].values()]) for seed in result.dice]
            row[names.get(label, str(label))] = {"mean": float(np.mean(per_seed)), "sd": float(np.std(per_seed, ddof=1))
                                                 if len(per_seed) > 1 else 0.0}
        table.append(row)
    comparisons = []
    by_setting = {(r.setting.real, r.setting.synthetic): r for r in results}
    for (real, synthetic), result in by_setting.items():
        if real and synthetic and (real, 0) in by_setting:
            a, b = per_subject_mean(by_setting[(real, 0)], labels), per_subject_mean(result, labels)
            subjects = sorted(a)
            diff = [b[s] - a[s] for s in subjects]
            test = stats.ttest_rel([b[s] for s in subjects], [a[s] for s in subjects]) if len(subjects) > 1 else None
            comparisons.append({"with": result.setting.name, "against": by_setting[(real, 0)].setting.name,
                                "mean_dice_difference": float(np.mean(diff)),
                                "paired_t": None if test is None else float(test.statistic),
                                "p": None if test is None else float(test.pvalue), "test_subjects": len(subjects)})
    return {"table": table, "comparisons": comparisons}
