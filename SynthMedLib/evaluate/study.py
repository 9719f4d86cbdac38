"""Does a synthetic dataset give the same science as the real one? Fit one regression design on
both (and on a truth population where one exists) and compare every coefficient.

A dataset is a folder with ``participants.tsv`` (participant_id + covariates) and ``volumes.tsv``
(participant_id, optionally age, and ``*_ml`` columns), as written by ``synthmed cohort`` and
``synthmed dataset``. Where ``volumes.tsv`` is missing, volumes are counted from the dataset's label
maps (``sub-*/**/anat/*_dseg.nii.gz`` named by ``dseg.tsv``).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from SynthMedLib.errors import InputError

# Age centred at 70 so that the diagnosis and sex terms are differences at 70, not at birth.
DEFAULT_FORMULAS = tuple(f"{volume} ~ I(age - 70) + sex + diagnosis + I(age - 70):diagnosis"
                         for volume in ("ventricles_ml", "gm_ml", "wm_ml"))
# Reference levels a reader expects: effects are "relative to cognitively normal", "male vs female".
# Other text columns fall back to alphabetical order (patsy's default).
LEVEL_ORDER = {"diagnosis": ["CN", "MCI", "AD"], "sex": ["F", "M"]}
DATASET_FILES = ("participants.tsv",)


@dataclass
class Estimate:
    value: float
    low: float
    high: float
    p: float

    def covers(self, value: float) -> bool:
        return self.low <= value <= self.high


@dataclass
class TermComparison:
    formula: str
    term: str
    reference: Estimate
    synthetic: Estimate | None
    truth: float | None

    @property
    def synthetic_covers_reference(self) -> bool | None:
        return None if self.synthetic is None else self.synthetic.covers(self.reference.value)

    @property
    def same_sign(self) -> bool | None:
        return None if self.synthetic is None else bool(np.sign(self.synthetic.value) == np.sign(self.reference.value))

    def as_dict(self) -> dict:
        row = asdict(self)
        row.update(synthetic_covers_reference=self.synthetic_covers_reference, same_sign=self.same_sign,
                   reference_covers_truth=None if self.truth is None else self.reference.covers(self.truth),
                   synthetic_covers_truth=(None if self.truth is None or self.synthetic is None
                                           else self.synthetic.covers(self.truth)))
        return row


def read_dataset(folder: str | Path):
    """A DataFrame: one row per scan, covariates joined from participants.tsv."""
    import pandas as pd

    folder = Path(folder)
    if not (folder / "participants.tsv").is_file():
        raise InputError(f"{folder} has no participants.tsv: not a dataset folder "
                         "(make one with 'synthmed cohort' or 'synthmed dataset')")
    participants = pd.read_csv(folder / "participants.tsv", sep="\t", dtype={"participant_id": str})
    if (folder / "volumes.tsv").is_file():
        volumes = pd.read_csv(folder / "volumes.tsv", sep="\t", dtype={"participant_id": str})
    else:
        volumes = volumes_from_label_maps(folder)
    for table, name in ((participants, "participants.tsv"), (volumes, "volumes")):
        if "participant_id" not in table.columns:
            raise InputError(f"{folder}/{name} has no participant_id column")
    # A scan's own age (volumes.tsv) wins over a participant's baseline age.
    shared = [c for c in participants.columns if c in volumes.columns and c != "participant_id"]
    frame = volumes.merge(participants.drop(columns=shared), on="participant_id", how="left")
    if frame.empty:
        raise InputError(f"{folder}: no scans with volumes")
    missing = frame["participant_id"][frame.isna().all(axis=1)]
    if len(missing):
        raise InputError(f"{folder}: scans of unknown participants: {', '.join(missing[:5])}")
    return frame


def volumes_from_label_maps(folder: Path):
    """volumes.tsv rebuilt from the label maps, for datasets that ship label maps only."""
    import pandas as pd
    import SimpleITK as sitk

    names_file = folder / "dseg.tsv"
    if not names_file.is_file():
        raise InputError(f"{folder} has neither volumes.tsv nor dseg.tsv (the label names)")
    names = pd.read_csv(names_file, sep="\t")
    rows = []
    for path in sorted(folder.glob("sub-*/**/anat/*_dseg.nii.gz")):
        image = sitk.ReadImage(str(path))  # kept alive: an array view of a temporary reads freed memory
        labels = sitk.GetArrayViewFromImage(image)
        voxel_ml = math.prod(image.GetSpacing()) / 1000.0
        counts = np.bincount(np.asarray(labels, dtype=np.int64).ravel())
        row = {"participant_id": path.name.split("_")[0]}
        session = re.search(r"_ses-age(\d+)(?:p(\d+))?_", path.name)
        if session:
            row["age"] = float(f"{session.group(1)}.{session.group(2) or 0}")
        for index, name in zip(names["index"], names["name"]):
            row[f"{name}_ml"] = float(counts[index]) * voxel_ml if index < len(counts) else 0.0
        rows.append(row)
    if not rows:
        raise InputError(f"{folder} has no volumes.tsv and no sub-*/**/anat/*_dseg.nii.gz label maps")
    return pd.DataFrame(rows)


def _prepare(frame, formula):
    import pandas as pd

    frame = frame.copy()
    for column, order in LEVEL_ORDER.items():
        if column in frame.columns:
            present = [level for level in order if level in set(frame[column])]
            extra = sorted(set(frame[column].dropna()) - set(present))
            frame[column] = pd.Categorical(frame[column], categories=present + extra)
    outcome = formula.split("~")[0].strip()
    if outcome not in frame.columns:
        raise InputError(f"the outcome {outcome!r} is not a column of the dataset "
                         f"(columns: {', '.join(map(str, frame.columns))})")
    return frame


def fit(frame, formula: str, alpha: float = 0.05) -> dict[str, Estimate]:
    """OLS of ``formula`` with heteroscedasticity-robust standard errors (HC3: the spread of
    volumes grows with age and disease, so the classical errors would make the CIs too narrow),
    clustered by participant when a participant has several scans (repeated visits are not
    independent observations)."""
    import statsmodels.formula.api as smf
    from patsy import PatsyError

    frame = _prepare(frame, formula)
    try:
        model = smf.ols(formula, data=frame)
    except PatsyError as error:
        raise InputError(f"formula {formula!r}: {error}") from None
    repeated = frame["participant_id"].duplicated().any()
    if model.nobs <= len(model.exog_names):
        raise InputError(f"formula {formula!r} has {len(model.exog_names)} coefficients but the dataset only "
                         f"{int(model.nobs)} scans")
    if repeated:
        groups = frame.loc[model.data.row_labels, "participant_id"].astype("category").cat.codes
        result = model.fit(cov_type="cluster", cov_kwds={"groups": np.asarray(groups)})
    else:
        result = model.fit(cov_type="HC3")
    intervals = result.conf_int(alpha)
    return {term: Estimate(float(result.params[term]), float(intervals.loc[term, 0]),
                           float(intervals.loc[term, 1]), float(result.pvalues[term]))
            for term in result.params.index}


def compare(reference, synthetic, formulas=DEFAULT_FORMULAS, truth=None) -> list[TermComparison]:
    rows = []
    for formula in formulas:
        ref = fit(reference, formula)
        syn = fit(synthetic, formula) if synthetic is not None else {}
        true = {term: e.value for term, e in fit(truth, formula).items()} if truth is not None else {}
        for term, estimate in ref.items():
            rows.append(TermComparison(formula, term, estimate, syn.get(term), true.get(term)))
    return rows


def dataset_provenance(folder: str | Path) -> dict:
    """What made a dataset (its dataset_description.json GeneratedBy), for the report."""
    path = Path(folder) / "dataset_description.json"
    if not path.is_file():
        return {"folder": str(folder)}
    description = json.loads(path.read_text())
    return {"folder": str(folder), "name": description.get("Name"),
            "generated_by": description.get("GeneratedBy")}
