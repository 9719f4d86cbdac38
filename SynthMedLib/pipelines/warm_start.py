"""Which target's fields a new target's demons start from.

The age slider asks for ages next to ones already computed on the same scan, and a request for
several ages holds neighbours too. The model's change grows with the years between source and
target, so a neighbour's fields scaled by the ratio of those years are a close start: from there
demons.WARM_ITERATIONS (10) land within about 0.1 mm on average of where 60 from zero do
(bench/results/demons.md; unscaled, 0.2-0.7 mm).

A neighbour is a known target on the same side of the source (older, or younger) that differs in
age and nothing else (another diagnosis is another change); the nearest in age is taken. Where a
request has none, its target farthest from the source starts from zero (the full
demons.ITERATIONS) and the rest are scaled down from it (``order``): scaling down was measured
closer than scaling up.

Known fields are kept per reconstruction (``InversionCache.fields``), in memory: a dict from a
target's conditions and fields to its voxel fields and the change scale found for them.
"""

import json

SOURCE_KEY = "source"
MAX_KNOWN = 8  # per reconstruction: 8 targets x 2 fields x 3 x 48x64x48 float32 = 28 MB at most


def _group(conditions, smoothings):
    """Targets that may start from each other: the same conditions but age, the same fields."""
    rest = {k: v for k, v in conditions.items() if k != "age"}
    return json.dumps({"rest": rest, "smoothings": [float(s) for s in smoothings]}, sort_keys=True,
                      default=str)


def _years(conditions, source):
    """Years from the source to ``conditions`` (the source's age 0 when it is unknown)."""
    base = float(source["age"]) if source and "age" in source else 0.0
    return float(conditions["age"]) - base


def _neighbours(target, other, source):
    """Whether ``other`` may start ``target``: age and nothing else differs, same side of the
    source, and not the source's age itself (a zero change scales to nothing)."""
    if "age" not in target or "age" not in other:
        return False
    if {k: v for k, v in target.items() if k != "age"} != {k: v for k, v in other.items() if k != "age"}:
        return False
    return _years(target, source) * _years(other, source) > 0


def nearest(known, target, smoothings):
    """(voxel fields, the change scale found for the neighbour or None) to start ``target`` from:
    the nearest neighbour's fields scaled by the ratio of the years; (None, None) when there is
    none (start from zero)."""
    source = known.get(SOURCE_KEY)
    best, best_gap = None, float("inf")
    group = _group(target, smoothings)
    for entry_group, conditions, voxels, scale in known.get("fields", {}).values():
        if entry_group == group and _neighbours(target, conditions, source):
            gap = abs(float(target["age"]) - float(conditions["age"]))
            if gap < best_gap:
                best, best_gap = (conditions, voxels, scale), gap
    if best is None:
        return None, None
    conditions, voxels, scale = best
    return voxels * (_years(target, source) / _years(conditions, source)), scale


def remember(known, target, smoothings, voxels, scale=None):
    """Keep ``target``'s voxel fields and the change scale found for them (the oldest go beyond
    MAX_KNOWN)."""
    if "age" not in target:
        return
    fields = known.setdefault("fields", {})
    key = json.dumps({"conditions": target, "group": _group(target, smoothings)}, sort_keys=True,
                     default=str)
    fields.pop(key, None)
    fields[key] = (_group(target, smoothings), dict(target), voxels, scale)
    while len(fields) > MAX_KNOWN:
        fields.pop(next(iter(fields)))


def order(known, targets):
    """Target indices in the order to compute them: next, the one nearest to a neighbour already
    known or computed; when none has one, the one farthest from the source (it starts from zero,
    and its neighbours are then scaled down from it)."""
    source = known.get(SOURCE_KEY)
    reached = [entry[1] for entry in known.get("fields", {}).values()]
    left, out = list(range(len(targets))), []
    while left:
        def gap(i):
            return min((abs(float(targets[i]["age"]) - float(c["age"])) for c in reached
                        if _neighbours(targets[i], c, source)), default=float("inf"))
        index = min(left, key=gap)
        if gap(index) == float("inf"):
            index = max(left, key=lambda i: abs(_years(targets[i], source)) if "age" in targets[i] else -1.0)
        out.append(index)
        left.remove(index)
        reached.append(targets[index])
    return out
