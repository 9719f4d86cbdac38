"""A counterfactual or progression series that grows while the user explores it.

The first run on a scan streams in: the worker sends each target (age, or years after baseline)
as a ``partial`` event the moment it is ready, and it becomes a new item of the Sequences at once.
After that, a new age from the slider (or a typed one) is one more request for that age only: the
kept-alive worker has the scan's registration and inversion cached, so only the regeneration,
decode and return to the native grid run, and the answer is added to the same Sequences, table
and plot. The input node is only read (once: its file is kept for the later requests).

    live = LiveSeries.counterfactual(logic, node, model, conditions, [70, 80])
    logic.submit(live.job)                            # or logic.run(live.job)
    ... later, the slider at 75:
    job = live.request([75])                          # None when 75 is already there
    logic.submit(job)                                 # one Sequence item added when it arrives

Cancel or a failure takes back the items the interrupted request had added, so the scene is as
it was before it.
"""

import shutil
import tempfile
from pathlib import Path

from SynthMedLib.errors import InputError
from SynthMedLib.worker import protocol
from SynthMedSlicer import hierarchy, results, series, tables

ROLES = (("image", "images"), ("labels", "segmentations"), ("difference", "difference maps"))


class LiveSeries:
    def __init__(self, logic, request_class, index_name, fields, input_node, title):
        self.logic, self.scene, self.request_class = logic, logic.scene, request_class
        self.index_name, self.fields, self.input_node, self.title = index_name, fields, input_node, title
        self.folder = Path(tempfile.mkdtemp(prefix="synthmed-live-"))
        # the input is written once: every later request for this series reads the same file
        self.fields["image"] = logic._write_input(input_node, self.folder)
        self.nodes = results.SeriesNodes(folder=hierarchy.output_folder(self.scene, title, input_node))
        self.sequences = {}            # role -> sequence node
        self.rows = {}                 # index value -> volumes row
        self.job = None

    # -- starting -------------------------------------------------------------------------------

    @classmethod
    def counterfactual(cls, logic, input_node, model_id, conditions, ages, steps=None, device="auto",
                       volume_course=True, brain_extraction="auto"):
        """The first run of an age series on ``input_node``; ``live.job`` is its request."""
        fields = {"model": model_id, "conditions": dict(conditions), "device": device,
                  "steps": None if steps is None else int(steps), "volume_course": volume_course,
                  "brain_extraction": brain_extraction}
        live = cls(logic, protocol.CounterfactualRequest, "age", fields, input_node,
                   f"{input_node.GetName()} aged (synthetic)")
        live.job = live.request(ages)
        return live

    @classmethod
    def progression(cls, logic, baseline_node, model_id, conditions, years, draws=4, steps=None,
                    device="auto", volume_course=True, brain_extraction="auto"):
        """The first run of a follow-up series (years after the baseline)."""
        fields = {"model": model_id, "conditions": dict(conditions), "draws": int(draws), "device": device,
                  "steps": None if steps is None else int(steps), "volume_course": volume_course,
                  "brain_extraction": brain_extraction}
        live = cls(logic, protocol.ProgressionRequest, "years", fields, baseline_node,
                   f"{baseline_node.GetName()} progression (synthetic)")
        live.job = live.request(years)
        return live

    def request(self, values):
        """A request for the ``values`` the series does not hold yet (None when it holds them all)."""
        from SynthMedSlicer.logic import Job

        wanted = sorted({float(v) for v in values} - set(self.values()))
        if self.index_name == "years" and any(v <= 0 for v in wanted):
            raise InputError("follow-up times are years after baseline (> 0)")
        if not wanted:
            return None
        key = "target_ages" if self.index_name == "age" else "years"
        request = self.request_class(**self.fields, **{key: wanted})
        job = Job(request, None, self.title, Path(tempfile.mkdtemp(prefix="synthmed-")))
        added = []
        job.on_partial = lambda partial: added.extend(self.add(partial))
        job.on_abort = lambda: self.remove(added)
        job.build = self.finish
        return job

    # -- growing --------------------------------------------------------------------------------

    def values(self):
        sequence = self.sequences.get("image")
        return [] if sequence is None else series.index_values(sequence)

    def add(self, partial):
        """Put one target (a ``partial`` event, or a whole result) into the series; returns the
        index values it added. Values already held are skipped (the final result repeats the
        streamed targets)."""
        segments = partial.get("segments", [])
        held = {role: set(series.index_values(s)) for role, s in self.sequences.items()}
        added = set()
        for entry in partial.get("images", []):
            role = entry.get("role")
            if role not in dict(ROLES):  # e.g. the brain mask: the panel's own business
                continue
            value = float(entry["index"][self.index_name])
            if value in held.get(role, ()):
                continue
            self._add_item(role, value, results.node_from_entry(self.scene, entry, segments), entry)
            added.add(value)
        for row in partial.get("volumes", []):
            self.rows.setdefault(float(row[self.index_name]), row)
        if added:
            self._refresh(max(added))
        return sorted(added)

    def finish(self, result):
        """The end of a request: anything not streamed is added; the SeriesNodes."""
        self.add(result)
        return self.nodes

    def remove(self, values):
        """Take ``values`` out of the series again (a cancelled or failed request)."""
        for value in values:
            for sequence in self.sequences.values():
                index = series._format_index(value)
                if sequence.GetItemNumberFromIndexValue(index) >= 0:
                    sequence.RemoveDataNodeAtValue(index)
            self.rows.pop(float(value), None)
        if values and self.nodes.browser is not None:
            self._refresh(None)

    def close(self):
        """Forget the kept input file (the nodes stay in the scene)."""
        shutil.rmtree(self.folder, ignore_errors=True)

    # -- nodes ----------------------------------------------------------------------------------

    def _add_item(self, role, value, node, entry):
        sequence = self.sequences.get(role)
        if sequence is None:
            suffix = dict(ROLES)[role]
            sequence = series.sequence_from_nodes(self.scene, [node], [value], self.index_name,
                                                  results.INDEX_UNITS.get(self.index_name, ""),
                                                  f"{self.title} {suffix}")
            hierarchy.mark_synthetic(sequence, entry.get("provenance", {}))
            self.sequences[role] = sequence
            setattr(self.nodes, {"image": "sequence", "labels": "label_sequence",
                                 "difference": "difference_sequence"}[role], sequence)
            hierarchy.move_into(self.scene, self.nodes.folder, [sequence])
        else:
            sequence.SetDataNodeAtValue(node, series._format_index(value))
        results._remove_with_display(self.scene, node)  # the sequence holds a copy

    def _refresh(self, show_value):
        """Browser (made once the first sequences exist, later ones synchronised), proxies, the
        volumes table and plot; the browser shows ``show_value``."""
        made = [self.sequences[r] for r, _ in ROLES if r in self.sequences]
        browser = self.nodes.browser
        if browser is None:
            browser, _ = series.add_browser(self.scene, made, f"{self.title} browser")
            self.nodes.browser = browser
            hierarchy.move_into(self.scene, self.nodes.folder, [browser])
        for sequence in made[1:]:
            if not browser.IsSynchronizedSequenceNode(sequence.GetID()):
                browser.AddSynchronizedSequenceNodeID(sequence.GetID())
        if show_value is not None:
            item = self.sequences["image"].GetItemNumberFromIndexValue(series._format_index(show_value))
            browser.SetSelectedItemNumber(max(0, item))
        series._sequences_logic(self.scene).UpdateProxyNodesFromSequences(browser)
        self.nodes.proxies = [browser.GetProxyNode(s) for s in made]
        for proxy, sequence in zip(self.nodes.proxies, made):  # named like build_series names them
            if proxy is not None:
                proxy.SetName(sequence.GetName())
        if self.nodes.difference_proxy is not None:  # one symmetric window over every item so far
            results.centre_on_zero(self.scene, self.nodes.difference_proxy, self.nodes.difference_sequence)
        self._table()

    def _table(self):
        rows = [self.rows[v] for v in sorted(self.rows)]
        if not rows:
            return
        if self.nodes.table is None:
            self.nodes.table = tables.volumes_table(self.scene, rows, self.index_name, f"{self.title} volumes")
            self.nodes.chart, self.nodes.plot_series = tables.volumes_plot(
                self.scene, self.nodes.table, self.index_name, f"{self.title} volumes plot")
            # the plot series too: left at the top level they would clutter the Data module
            hierarchy.move_into(self.scene, self.nodes.folder,
                                [self.nodes.table, self.nodes.chart, *self.nodes.plot_series])
            return
        table = self.nodes.table.GetTable()
        tables.fill_rows(table, rows)
        table.Modified()
        self.nodes.table.Modified()
