"""The conditions of every sample of a synthetic dataset: from a table, or drawn from a distribution.

A table (TSV/CSV) has one row per sample and one column per card condition (``participant_id`` is
allowed and ignored). A distribution spec (JSON) gives each condition one of::

    {"uniform": [low, high]}   {"normal": [mean, sd]}   {"categorical": {"CN": 0.4, "AD": 0.6}}
    {"value": 70}

or the whole spec is ``{"match": "path/participants.tsv"}``: rows drawn (with replacement) from an
existing dataset's participants. Draws come from the dataset seed alone, so the same request gives
the same conditions on any machine.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from SynthMedLib import arguments
from SynthMedLib.errors import InputError
from SynthMedLib.pipelines.latent_io import condition_vectors

IGNORED_COLUMNS = ("participant_id", "seed")
COVARIATE_STREAM = 1  # SeedSequence([dataset seed, stream]) for the covariate draws


def card_variables(card) -> dict:
    return {v["name"]: v for v in card.conditioning.variables}


def read_table(path: str | Path, card) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"covariate table {path} does not exist")
    with open(path, newline="") as stream:
        sample = stream.read(4096)
        stream.seek(0)
        delimiter = "\t" if "\t" in sample else ","
        rows = list(csv.DictReader(stream, delimiter=delimiter))
    if not rows:
        raise InputError(f"covariate table {path} has no rows")
    return check_rows([{k: v for k, v in row.items() if k not in IGNORED_COLUMNS} for row in rows], card,
                      where=str(path))


def draw(spec: dict, n: int, seed: int, card) -> list[dict]:
    n = arguments.count(n, "the number of samples")
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), COVARIATE_STREAM]))
    if "match" in spec:
        source = read_table(spec["match"], card)
        return [dict(source[i]) for i in rng.integers(len(source), size=n)]
    variables = card_variables(card)
    unknown = sorted(set(spec) - set(variables))
    if unknown:
        raise InputError(f"the distribution names {', '.join(unknown)}, which model '{card['id']}' does not "
                         f"take (its conditions: {', '.join(variables)})")
    columns = {}
    for name, rule in spec.items():
        columns[name] = _draw_one(name, rule, n, rng)
    rows = [{name: columns[name][i] for name in columns} for i in range(n)]
    return check_rows(rows, card, where="the distribution")


def _draw_one(name, rule, n, rng):
    if not isinstance(rule, dict) or len(rule) != 1:
        raise InputError(f"{name}: a distribution is one of uniform, normal, categorical, value")
    (kind, value), = rule.items()
    if kind == "uniform":
        low, high = map(float, value)
        return [round(float(x), 2) for x in rng.uniform(low, high, n)]
    if kind == "normal":
        mean, sd = map(float, value)
        return [round(float(x), 2) for x in rng.normal(mean, sd, n)]
    if kind == "categorical":
        levels, weights = list(value), np.asarray(list(value.values()), float)
        if (weights < 0).any() or weights.sum() <= 0:
            raise InputError(f"{name}: categorical weights must be non-negative with a positive sum")
        return [levels[i] for i in rng.choice(len(levels), size=n, p=weights / weights.sum())]
    if kind == "value":
        return [value] * n
    raise InputError(f"{name}: unknown distribution {kind!r} (uniform, normal, categorical, value)")


def check_rows(rows: list[dict], card, where: str) -> list[dict]:
    """Every row typed and checked against the card before any sample is made."""
    variables = card_variables(card)
    unknown = sorted(set().union(*rows) - set(variables))
    if unknown:
        raise InputError(f"{where} has columns {', '.join(unknown)} that model '{card['id']}' does not take "
                         f"(its conditions: {', '.join(variables)})")
    typed = []
    for index, row in enumerate(rows):
        conditions = {}
        for name, value in row.items():
            if value in (None, ""):
                continue
            conditions[name] = value if "values" in variables[name] else _number(value, name, index, where)
        try:
            condition_vectors(card, [conditions])
        except InputError as error:
            raise InputError(f"{where}, sample {index}: {error}") from None
        typed.append(conditions)
    return typed


def _number(value, name, index, where):
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{where}, sample {index}: {name} must be a number, not {value!r}") from None
    if not np.isfinite(number):
        raise InputError(f"{where}, sample {index}: {name} must be finite, not {value!r}")
    return number


def read_spec(path: str | Path) -> dict:
    try:
        spec = json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        raise InputError(f"distribution spec {path}: {error}") from None
    if not isinstance(spec, dict) or not spec:
        raise InputError(f"distribution spec {path} must be a non-empty JSON object")
    if "match" in spec:
        spec["match"] = str((Path(path).parent / spec["match"]).resolve())
    return spec
