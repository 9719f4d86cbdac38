"""How a radiologist looks at an aging or progression result: input | result side by side, the
views linked (one slice, one zoom in both), the difference map over the result in DivergingBlueRed.

Works on the slice composite nodes of the scene (the application makes one per view: "Red" and
"Yellow" are the two views of Slicer's side-by-side layout), so it runs without Qt; the widget
switches the layout (vtkMRMLLayoutNode.SlicerLayoutSideBySideView) and fits the views.
"""

INPUT_VIEW = "Red"
RESULT_VIEW = "Yellow"
DIFFERENCE_OPACITY = 0.5


def composite_nodes(scene):
    """{view name: slice composite node} of the scene."""
    nodes = scene.GetNodesByClass("vtkMRMLSliceCompositeNode")
    out = {}
    for i in range(nodes.GetNumberOfItems()):
        node = nodes.GetItemAsObject(i)
        out[node.GetLayoutName()] = node
    return out


def side_by_side(scene, input_node, result_node, difference_node=None):
    """Input in the left view, the result (+ difference overlay) in the right one, linked.
    Returns the view names it set (views the scene does not have yet are skipped)."""
    views = composite_nodes(scene)
    done = []
    left, right = views.get(INPUT_VIEW), views.get(RESULT_VIEW)
    if left is not None and input_node is not None:
        left.SetBackgroundVolumeID(input_node.GetID())
        left.SetForegroundVolumeID(None)
        left.SetLinkedControl(True)
        done.append(INPUT_VIEW)
    if right is not None and result_node is not None:
        right.SetBackgroundVolumeID(result_node.GetID())
        right.SetForegroundVolumeID(difference_node.GetID() if difference_node is not None else None)
        right.SetForegroundOpacity(DIFFERENCE_OPACITY if difference_node is not None else 0.0)
        right.SetLinkedControl(True)
        done.append(RESULT_VIEW)
    return done
