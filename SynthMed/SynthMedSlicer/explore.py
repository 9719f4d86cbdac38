"""The panels' age (and years) sliders, without Qt: one growing series per panel and the request a
slider value turns into.

The first run of "Age the scan" / "Predict progression" is a LiveSeries (live_series.py): its
targets stream into the Sequences as they arrive. After it, a slider value is one request for that
value only, answered from the worker's cached registration and inversion, and one item more in
the same Sequences; a value the series holds already is just shown. The series belongs to the
settings it was run with (input node, model, who the scan is, steps, device...): once they
change, the slider asks the user to run the task again rather than mix two series.

    explorer = Explorer(logic)
    job = explorer.start("counterfactual", key, node, model_id, conditions, options)
    logic.submit(job) ... the job ends: explorer.ended(job)
    job = explorer.ask("counterfactual", key, 75)     # None: 75 is there already (now shown)
"""

from SynthMedLib.errors import InputError
from SynthMedSlicer import results, series
from SynthMedSlicer.live_series import LiveSeries

WHAT = {"counterfactual": ("age", "Age the scan"), "progression": ("follow-up year", "Predict progression")}


def series_key(kind, node, model_id, conditions, values):
    """What a series depends on besides its index values (``values``: the parameter node)."""
    common = (kind, node.GetID() if node is not None else None, model_id,
              tuple(sorted((k, str(v)) for k, v in conditions.items())), str(values.device))
    if kind == "counterfactual":
        return common + (int(values.counterfactualSteps), bool(values.counterfactualVolumeCourse))
    return common + (int(values.progressionDraws), int(values.progressionSteps), bool(values.progressionVolumeCourse))


class Explorer:
    def __init__(self, logic):
        self.logic = logic
        self.series = {}     # kind -> LiveSeries (with .key and .first, the job of its first run)

    def start(self, kind, key, node, model_id, conditions, options):
        """The first run on a scan (``options``: parameters.run_options of the kind): a new live
        series replaces the kind's old one (whose nodes stay in the scene)."""
        self.forget(kind)
        if kind == "counterfactual":
            live = LiveSeries.counterfactual(self.logic, node, model_id, conditions, options["targetAges"],
                                             steps=options.get("steps"), device=options.get("device", "auto"),
                                             volume_course=options.get("volumeCourse", True))
        else:
            live = LiveSeries.progression(self.logic, node, model_id, conditions, options["years"],
                                          draws=options.get("draws", 4), steps=options.get("steps"),
                                          device=options.get("device", "auto"),
                                          volume_course=options.get("volumeCourse", True))
        live.key, live.first = key, live.job
        self.series[kind] = live
        return live.job

    def live(self, kind):
        """The kind's series, if its nodes are still in the scene."""
        live = self.series.get(kind)
        if live is None:
            return None
        sequence = live.nodes.sequence
        if sequence is not None and not self.logic.scene.IsNodePresent(sequence):
            self.forget(kind)  # the user deleted the results (or closed the scene)
            return None
        return live

    def ready(self, kind, key):
        """Whether a slider value can be answered now: a finished first run with these settings."""
        live = self.live(kind)
        return bool(live is not None and live.key == key and live.first.state == "done" and live.values())

    def ask(self, kind, key, value):
        """The request for ``value`` alone; None when the series holds it (it is shown instead)."""
        what, button = WHAT[kind]
        live = self.live(kind)
        if live is None or live.first.state != "done":
            raise InputError(f"click '{button}' first; the slider then asks for one more {what} at a time")
        if live.key != key:
            raise InputError(f"the scan or the settings changed since the last run: click '{button}' "
                             f"again to start a new series, then move the slider")
        job = live.request([value])
        if job is None:
            self.select(kind, value)
        return job

    def select(self, kind, value):
        """Show the item at ``value`` in the series' browser (the views follow it)."""
        live = self.series[kind]
        index = live.sequences["image"].GetItemNumberFromIndexValue(series._format_index(value))
        if index >= 0:
            live.nodes.browser.SetSelectedItemNumber(index)

    def ended(self, job):
        """A job ended. A first run that did not finish takes its series with it (no half series left
        in the scene); a later request's items were already taken back by the series itself."""
        for kind, live in list(self.series.items()):
            if job is live.first and job.state != "done":
                self.discard(kind)

    def discard(self, kind):
        live = self.series.pop(kind, None)
        if live is None:
            return
        scene = self.logic.scene
        if live.nodes.folder:
            # the folder's branch of items first, then the nodes: a node removed first leaves its
            # item behind where no subject-hierarchy logic runs (a bare scene, scripting)
            scene.GetSubjectHierarchyNode().RemoveItem(live.nodes.folder, False, True)
        for node in live.nodes.nodes:  # sequences, browser, table, plot, the browser's proxies
            if not scene.IsNodePresent(node):
                continue
            if hasattr(node, "GetNumberOfDisplayNodes"):  # their display nodes go too
                results._remove_with_display(scene, node)
            else:
                scene.RemoveNode(node)
        live.close()

    def forget(self, kind=None):
        """Stop growing the kind's series (every series when None); its nodes stay in the scene."""
        for name in [kind] if kind else list(self.series):
            live = self.series.pop(name, None)
            if live is not None:
                live.close()
