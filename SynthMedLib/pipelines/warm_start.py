"""Which target's fields a new target's demons start from.

The age slider asks for ages next to ones already computed on the same scan, and a request for
several ages holds neighbours too. Demons started from a neighbour's fields need a sixth of the
iterations (demons.WARM_ITERATIONS) to land within about 0.2 mm on average of where they land
from zero (bench/results/demons.md).
The source itself is a known neighbour with a zero field: a target starts from another target
only when that one is nearer to it than the source, and otherwise from zero with the full
iterations.

Known fields are kept per reconstruction (``InversionCache.fields``): a dict from a target's
conditions to its voxel fields. Only targets that differ in age and nothing else are neighbours
(a different diagnosis is another change, not a nearby one).
"""

import json

SOURCE_KEY = "source"
MAX_KNOWN = 32  # per reconstruction: 32 targets x 2 fields x 3 x 48x64x48 float32 = 113 MB at most


def _group(conditions, smoothings):
    """Targets that may start from each other: the same conditions but age, the same fields."""
    rest = {k: v for k, v in conditions.items() if k != "age"}
    return json.dumps({"rest": rest, "smoothings": [float(s) for s in smoothings]}, sort_keys=True,
                      default=str)


def _neighbours(conditions, other):
    return ("age" in conditions and "age" in other
            and {k: v for k, v in conditions.items() if k != "age"}
            == {k: v for k, v in other.items() if k != "age"})


def _distance(target, other):
    return abs(float(target["age"]) - float(other["age"]))


def nearest(known, target, smoothings):
    """(voxel fields, the change scale found for them or None) to start ``target`` from, or
    (None, None) (start from zero): the nearest known target's, if it is nearer than the source
    (``known[SOURCE_KEY]``, its conditions)."""
    if "age" not in target:
        return None, None
    source = known.get(SOURCE_KEY)
    best, best_distance = (None, None), _distance(target, source) if source and "age" in source else float("inf")
    group = _group(target, smoothings)
    for entry_group, conditions, voxels, scale in known.get("fields", {}).values():
        if entry_group == group and _distance(target, conditions) < best_distance:
            best, best_distance = (voxels, scale), _distance(target, conditions)
    return best


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
    """Target indices, each next the one nearest to the source or to a target before it (known or
    earlier in the order), so that as many as possible start from a neighbour."""
    reached = [known[SOURCE_KEY]] if SOURCE_KEY in known else []
    reached += [entry[1] for entry in known.get("fields", {}).values()]
    left, out = list(range(len(targets))), []
    while left:
        def gap(i):
            return min((_distance(targets[i], c) for c in reached if _neighbours(targets[i], c)),
                       default=float("inf"))
        index = min(left, key=gap)
        out.append(index)
        left.remove(index)
        reached.append(targets[index])
    return out
