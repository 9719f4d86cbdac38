"""Where outputs go and what they say about themselves.

Outputs land in a folder under the input's study in the subject hierarchy (or a top-level folder
for generated scans), and every output node carries its provenance as attributes and says
"synthetic" in its name and description, so a synthetic scan can never pass for an acquired one.
"""

import json

ATTRIBUTE_PREFIX = "SynthMed."
# Provenance keys copied to their own attribute, for filtering nodes without parsing JSON.
FLAT_KEYS = ("model", "card_version", "weights_sha256", "seed", "sampler", "steps", "library_version")


def mark_synthetic(node, provenance):
    """Provenance as node attributes, "synthetic" in the name and the description."""
    node.SetAttribute(ATTRIBUTE_PREFIX + "synthetic", "true")
    node.SetAttribute(ATTRIBUTE_PREFIX + "provenance", json.dumps(provenance, sort_keys=True, default=str))
    for key in FLAT_KEYS:
        if key in provenance and provenance[key] is not None:
            value = provenance[key]
            node.SetAttribute(ATTRIBUTE_PREFIX + _camel(key), value if isinstance(value, str) else json.dumps(value))
    if "conditions" in provenance:
        node.SetAttribute(ATTRIBUTE_PREFIX + "conditions", json.dumps(provenance["conditions"], sort_keys=True))
    if "synthetic" not in node.GetName().lower():
        node.SetName(f"{node.GetName()} (synthetic)")
    what = provenance.get("model", "a generative model")
    node.SetDescription(f"SYNTHETIC image made by SynthMed with {what}; not an acquired scan. "
                        f"Provenance: {node.GetAttribute(ATTRIBUTE_PREFIX + 'provenance')}")


def provenance_of(node):
    text = node.GetAttribute(ATTRIBUTE_PREFIX + "provenance")
    return json.loads(text) if text else None


def _camel(key):
    head, *rest = key.split("_")
    return head + "".join(part.capitalize() for part in rest)


def output_folder(scene, name, input_node=None):
    """A new subject-hierarchy folder for a run's outputs: under the input's parent (its study)
    when there is an input, at the top of the scene otherwise; named uniquely among its siblings
    ("name", "name 2", ...), so two runs never share a folder name."""
    hierarchy = scene.GetSubjectHierarchyNode()
    parent = hierarchy.GetSceneItemID()
    if input_node is not None:
        parent = hierarchy.GetItemParent(item_of(scene, input_node)) or parent
    return hierarchy.CreateFolderItem(parent, unique_child_name(hierarchy, parent, name))


def unique_child_name(hierarchy, parent, name):
    import vtk

    children = vtk.vtkIdList()
    hierarchy.GetItemChildren(parent, children)
    taken = {hierarchy.GetItemName(children.GetId(i)) for i in range(children.GetNumberOfIds())}
    candidate, number = name, 1
    while candidate in taken:
        number += 1
        candidate = f"{name} {number}"
    return candidate


def item_of(scene, node):
    """The node's subject-hierarchy item. The application gives every node one as it is added;
    a bare scene (scripts, tests) does not, so make it at the top level then."""
    hierarchy = scene.GetSubjectHierarchyNode()
    item = hierarchy.GetItemByDataNode(node)
    if not item:
        item = hierarchy.CreateItem(hierarchy.GetSceneItemID(), node)
    return item


def move_into(scene, folder_item, nodes):
    hierarchy = scene.GetSubjectHierarchyNode()
    for node in nodes:
        hierarchy.SetItemParent(item_of(scene, node), folder_item)
