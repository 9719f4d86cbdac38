"""The Qt wiring of the series a counterfactual or progression run makes: its targets streaming
into the views as they arrive, the seek widget and summary, and the "Ask for age" / "Ask for
year" sliders that ask the kept-alive worker for one more value only. A mixin of panels.Panels;
what a slider value means (which series, which request, or "run first") is in explore.py.

Qt/CTK/MRML names checked against the sources (commontk/CTK 868d56c of 2026-08-12, Slicer/Slicer
583e9b3): ctkSliderWidget (minimum, maximum, value, valueChanged(double); with tracking off, as in
the .ui, valueChanged comes when the slider is released or a typed value is entered, not while it
is dragged; blockSignals from QObject), qMRMLSequenceBrowserSeekWidget.setMRMLSequenceBrowserNode,
vtkMRMLLayoutNode.SlicerLayoutSideBySideView, the Sequences module's setToolBarActiveBrowserNode.
"""

import html

import slicer

from SynthMedLib.errors import SynthMedError
from SynthMedSlicer import explore, models, panel_state, results, views

# kind -> (seek widget, summary label, "ask for one more value" slider)
SERIES_WIDGETS = {
    "counterfactual": ("counterfactualSeekWidget", "counterfactualSummaryLabel", "counterfactualAgeSlider"),
    "progression": ("progressionSeekWidget", "progressionSummaryLabel", "progressionYearsSlider"),
}
INPUTS = {"counterfactual": "counterfactualInputSelector", "progression": "progressionInputSelector"}
ASKED = {"counterfactual": "age", "progression": "follow-up at year"}


class SeriesSection:
    def connectSeries(self):
        self.explorer = explore.Explorer(self.core)
        for kind, (_seek, _summary, sliderName) in SERIES_WIDGETS.items():
            getattr(self.ui, sliderName).valueChanged.connect(
                lambda value, kind=kind: self.onSliderValue(kind, value))

    def inputNode(self, kind):
        return getattr(self.ui, INPUTS[kind]).currentNode()

    def seriesKey(self, kind):
        model, values = self.currentModel(), self.parameterNode()
        if model is None or values is None:
            return None
        return explore.series_key(kind, self.inputNode(kind), model["id"], self.conditionsFor(kind), values)

    def startSeries(self, kind, model, conditions, options):
        """The first run on a scan: a job whose targets stream into a new series."""
        return self.explorer.start(kind, self.seriesKey(kind), self.inputNode(kind), model["id"], conditions, options)

    def configureSliders(self, model):
        """The age slider spans the model's age range (the card's); years keep the .ui's range."""
        slider = getattr(self.ui, SERIES_WIDGETS["counterfactual"][2])
        age = next((s for s in models.condition_spec(model or {})
                    if s["name"] == "age" and s["kind"] == "number"), None)
        if age is not None:
            slider.blockSignals(True)  # a range change that moves the value is not a request
            slider.minimum, slider.maximum = age["minimum"], age["maximum"]
            slider.blockSignals(False)

    def updateSliders(self):
        for kind, (_seek, _summary, sliderName) in SERIES_WIDGETS.items():
            ready = self.explorer.ready(kind, self.seriesKey(kind))
            getattr(self.ui, sliderName).enabled = panel_state.slider_enabled(
                self.startup, self.jobKind(), self.query is not None, ready)

    def onSliderValue(self, kind, value):
        """A released slider or a typed value: ask for that value only."""
        if self.isBusy() or self.startup != panel_state.READY:
            return
        try:
            job = self.explorer.ask(kind, self.seriesKey(kind), value)
            if job is None:
                self.setStatus(f"{ASKED[kind].capitalize()} {value:g} is in the series already: shown.")
                return
            self.core.submit(job)
        except SynthMedError as error:
            self.setStatus(str(error), error=True)
            return
        self.started(f"Asking the model for {ASKED[kind]} {value:g}…")

    def onPartial(self, job):
        """A target of a running first run arrived: show the series now, not at the end."""
        live = self.explorer.live(job.kind) if job is not None and job.kind in SERIES_WIDGETS else None
        if live is not None and job is live.first:
            self.showSeries(job.kind, live.nodes)

    def showSeries(self, kind, nodes, result=None):
        """Input | result side by side with the difference overlay, once per series (later values
        only move its browser, so the user's zoom and slice stay); the summary when it ended."""
        if nodes.browser is not None and not getattr(nodes, "shown", False):
            nodes.shown = True  # on the series itself: node IDs come back after a scene close
            slicer.app.layoutManager().setLayout(slicer.vtkMRMLLayoutNode.SlicerLayoutSideBySideView)
            views.side_by_side(slicer.mrmlScene, self.inputNode(kind), nodes.proxies[0] if nodes.proxies else None,
                               nodes.difference_proxy)
            slicer.util.resetSliceViews()
            getattr(self.ui, SERIES_WIDGETS[kind][0]).setMRMLSequenceBrowserNode(nodes.browser)
            sequences = getattr(slicer.modules, "sequences", None)
            if sequences is not None:
                sequences.setToolBarActiveBrowserNode(nodes.browser)
                sequences.setToolBarVisible(True)
        if result is not None:
            getattr(self.ui, SERIES_WIDGETS[kind][1]).text = "<br>".join(
                html.escape(line) for line in results.summary(result))

    def seriesDoneMessage(self, job):
        request = job.request
        values = getattr(request, "target_ages", None) or getattr(request, "years", None) or []
        return f"Done: {job.title}, {ASKED[job.kind]} {', '.join(f'{v:g}' for v in values)}."
