"""Series of volumes (one per age or year) as a Sequence with its browser, so the user scrubs the
index with the slider in the sequence toolbar."""


def _ensure_browser_class(scene):
    # The Sequences module registers the browser node class in the application; a bare scene
    # (scripting outside Slicer, tests on slicer-core) needs it registered here.
    if not scene.IsNodeClassRegistered("vtkMRMLSequenceBrowserNode"):
        import slicer

        scene.RegisterNodeClass(slicer.vtkMRMLSequenceBrowserNode())


def sequence_from_nodes(scene, nodes, values, index_name, index_unit, name):
    """A sequence node holding a copy of each of ``nodes`` at its index value. The original nodes
    are removed from the scene afterwards by the caller if only the sequence is wanted."""
    if len(nodes) != len(values):
        raise ValueError("one index value per node")
    sequence = scene.AddNewNodeByClass("vtkMRMLSequenceNode", scene.GenerateUniqueName(name))
    sequence.SetIndexName(index_name)
    sequence.SetIndexUnit(index_unit)
    sequence.SetIndexType(sequence.NumericIndex)
    for node, value in zip(nodes, values):
        sequence.SetDataNodeAtValue(node, _format_index(value))
    return sequence


def _format_index(value):
    return f"{float(value):g}"


def add_browser(scene, sequences, name):
    """A browser that plays ``sequences`` in sync; returns (browser, proxy nodes in order)."""
    _ensure_browser_class(scene)
    browser = scene.AddNewNodeByClass("vtkMRMLSequenceBrowserNode", scene.GenerateUniqueName(name))
    browser.SetAndObserveMasterSequenceNodeID(sequences[0].GetID())
    for sequence in sequences[1:]:
        browser.AddSynchronizedSequenceNodeID(sequence.GetID())
    browser.SetSelectedItemNumber(0)
    _sequences_logic(scene).UpdateProxyNodesFromSequences(browser)
    proxies = [browser.GetProxyNode(sequence) for sequence in sequences]
    return browser, proxies


def _sequences_logic(scene):
    """The application's Sequences logic (it makes the proxy nodes the views show), or one of our
    own on a bare scene."""
    import slicer

    modules = getattr(slicer, "modules", None)
    if modules is not None and hasattr(modules, "sequences"):
        return modules.sequences.logic()
    logic = slicer.vtkSlicerSequencesLogic()
    logic.SetMRMLScene(scene)
    return logic


def index_values(sequence):
    return [float(sequence.GetNthIndexValue(i)) for i in range(sequence.GetNumberOfDataNodes())]
