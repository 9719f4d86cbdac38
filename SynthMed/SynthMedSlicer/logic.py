"""SynthMed's Slicer logic without Qt: turn nodes into worker requests and results into nodes.

Two ways in, one path through:
- scripting (Slicer's Python console, SynthMedTest): ``logic.generate(...)`` blocks and returns
  the new nodes;
- the widget: ``job = logic.prepareX(...)``, ``logic.submit(job)``, then a QTimer calls
  ``logic.poll()``, which hands back progress events and, at the end, the new nodes.

Inputs are read into a private temporary folder (the input node is never touched); nodes are only
created from a finished result, so cancel or a worker failure leaves the scene as it was.
"""

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import SimpleITK as sitk

from SynthMedLib.errors import InputError
from SynthMedLib.worker import protocol
from SynthMedSlicer import results
from SynthMedSlicer.volumes import image_from_volume_node
from SynthMedSlicer.worker_client import WorkerClient, error_from_event


@dataclass
class Job:
    """One request: what to send (a protocol request dataclass), and how to turn its result into
    nodes."""

    request: protocol.Request
    build: object                      # callable(result) -> nodes
    title: str
    work_dir: Path = None
    request_id: str = None
    nodes: object = None
    result: dict = None                # the worker's answer, once done (results.summary reads it)
    error: Exception = None
    state: str = "prepared"            # prepared, running, done, failed, cancelled
    events: list = field(default_factory=list)
    on_partial: object = None          # callable(partial): one target of a series, as it arrives
    on_abort: object = None            # callable(): undo what on_partial added (cancel, failure)

    @property
    def kind(self):
        return self.request.TYPE

    @property
    def params(self):
        """What goes on the wire (the request's camelCase params)."""
        return self.request.to_params()

    def cleanup(self):
        if self.work_dir is not None:
            shutil.rmtree(self.work_dir, ignore_errors=True)


def library_dir_for(module_dir):
    """The folder holding SynthMedLib/: beside the module in an installed extension, the repository
    root in a source checkout."""
    if module_dir is None:
        return None
    module_dir = Path(module_dir)
    for candidate in (module_dir, module_dir.parent):
        if (candidate / "SynthMedLib" / "__init__.py").is_file():
            return str(candidate)
    return None


class SceneLogic:
    def __init__(self, scene, moduleDir=None, client=None, python=None, threads=None):
        self.scene = scene
        self.client = client or WorkerClient(python=python, library_dir=library_dir_for(moduleDir), threads=threads)
        self.job = None

    # -- scripting API (blocking) ----------------------------------------------------------------

    def generate(self, modelId, conditions, samples=1, seed=0, steps=None, guidance=None, sampler=None,
                 device="auto", labelConditionNode=None, onEvent=None, timeout=None, labelPreset=None):
        """New synthetic volume (+ segmentation) nodes: ``volumes, segmentations = logic.generate(...)``.
        ``labelConditionNode``: a segmentation whose segments are named like the model's labels (or
        like those of ``labelPreset``, e.g. "totalsegmentator"); the worker maps names to label ids."""
        return self.run(self.prepareGenerate(modelId, conditions, samples, seed, steps, guidance, sampler, device,
                                             labelConditionNode, labelPreset), onEvent, timeout)

    def counterfactualAging(self, inputVolumeNode, modelId, conditions, targetAges, steps=None, device="auto",
                            onEvent=None, timeout=None, volumeCourse=True):
        """A SeriesNodes: image/segmentation/difference sequences over ``age``, browser, table, plot.
        ``volumeCourse``: let the volume course the model ships (if any) size the change."""
        return self.run(self.prepareCounterfactual(inputVolumeNode, modelId, conditions, targetAges, steps, device,
                                                   volumeCourse), onEvent, timeout)

    def diseaseProgression(self, baselineVolumeNode, modelId, conditions, years, draws=4, steps=None,
                           device="auto", onEvent=None, timeout=None, volumeCourse=True):
        """A SeriesNodes over ``years`` after baseline (``volumeCourse`` as for counterfactualAging)."""
        return self.run(self.prepareProgression(baselineVolumeNode, modelId, conditions, years, draws, steps, device,
                                                volumeCourse), onEvent, timeout)

    def loadSimulatedSubject(self, seed=1_000_000, sex="F", diagnosis="CN", age=70.0, onEvent=None, timeout=None):
        """A subject of the simulated cohort (ground truth) as volume + segmentation nodes: an
        input to try counterfactual aging and progression on."""
        return self.run(self.prepareSimulatedSubject(seed, sex, diagnosis, age), onEvent, timeout)

    def syntheticDataset(self, modelId, folder, n, distribution, seed=0, steps=None, guidance=None,
                         device="auto", onEvent=None, timeout=None):
        """A synthetic dataset written into ``folder`` (BIDS derivative, see ``synthmed dataset``), not
        into the scene; returns the worker's summary ({folder, made, skipped, samples})."""
        return self.run(self.prepareDataset(modelId, folder, n, distribution, seed, steps, guidance, device),
                        onEvent, timeout)

    def run(self, job, onEvent=None, timeout=None):
        self.submit(job)

        def on_event(event):
            if event.get("event") == protocol.PARTIAL and job.on_partial is not None:
                job.on_partial(event.get("partial") or {})
            if onEvent is not None:
                onEvent(event)
        try:
            result = self.client.wait(job.request_id, on_event=on_event, timeout=timeout)
        except BaseException:
            if job.on_abort is not None:
                job.on_abort()
            job.state = "failed"
            job.cleanup()
            self.job = None
            raise
        return self._finish(job, result)

    # -- preparing requests ----------------------------------------------------------------------

    def prepareGenerate(self, modelId, conditions, samples=1, seed=0, steps=None, guidance=None, sampler=None,
                        device="auto", labelConditionNode=None, labelPreset=None):
        samples = int(samples)
        if samples < 1:
            raise InputError("generate at least one sample")
        request = protocol.GenerateRequest(model=modelId, conditions=dict(conditions), samples=samples,
                                           seed=int(seed), device=device, steps=steps, guidance=guidance,
                                           sampler=sampler)
        job = Job(request, None, f"{modelId} synthetic", Path(tempfile.mkdtemp(prefix="synthmed-")))
        if labelConditionNode is not None:
            try:
                request.label_condition, request.label_names = self._write_segmentation(labelConditionNode,
                                                                                        job.work_dir)
            except BaseException:
                job.cleanup()
                raise
            request.label_preset = labelPreset or None
        job.build = lambda result: results.build_generated(self.scene, result, f"SynthMed {modelId} (synthetic)")
        return job

    def prepareCounterfactual(self, inputVolumeNode, modelId, conditions, targetAges, steps=None, device="auto",
                              volumeCourse=True):
        ages = sorted({float(a) for a in targetAges})
        if not ages:
            raise InputError("give at least one target age")
        work_dir = Path(tempfile.mkdtemp(prefix="synthmed-"))
        request = protocol.CounterfactualRequest(
            model=modelId, image=self._write_input(inputVolumeNode, work_dir), target_ages=ages,
            conditions=dict(conditions), steps=None if steps is None else int(steps), device=device,
            volume_course=bool(volumeCourse))
        job = Job(request, None, "", work_dir)
        job.title = f"{inputVolumeNode.GetName()} aged (synthetic)"
        job.build = lambda result: results.build_series(self.scene, result, job.title, inputVolumeNode)
        return job

    def prepareProgression(self, baselineVolumeNode, modelId, conditions, years, draws=4, steps=None,
                           device="auto", volumeCourse=True):
        years = sorted({float(y) for y in years})
        if not years or years[0] <= 0:
            raise InputError("give one or more follow-up times in years after baseline (> 0)")
        work_dir = Path(tempfile.mkdtemp(prefix="synthmed-"))
        request = protocol.ProgressionRequest(
            model=modelId, image=self._write_input(baselineVolumeNode, work_dir), years=years,
            conditions=dict(conditions), draws=int(draws), steps=None if steps is None else int(steps),
            device=device, volume_course=bool(volumeCourse))
        job = Job(request, None, "", work_dir)
        job.title = f"{baselineVolumeNode.GetName()} progression (synthetic)"
        job.build = lambda result: results.build_series(self.scene, result, job.title, baselineVolumeNode)
        return job

    def prepareDataset(self, modelId, folder, n, distribution, seed=0, steps=None, guidance=None, device="auto"):
        """``distribution``: per condition {"uniform": [a, b]}, {"categorical": {...}}, {"value": v}..."""
        if int(n) < 1:
            raise InputError("a dataset needs at least one sample")
        if not folder:
            raise InputError("choose a folder for the dataset")
        request = protocol.DatasetRequest(model=modelId, folder=str(folder), n=int(n), distribution=dict(distribution),
                                          seed=int(seed), steps=steps, device=device,
                                          guidance=1.0 if guidance is None else guidance)
        return Job(request, lambda result: result, f"{modelId} dataset", Path(tempfile.mkdtemp(prefix="synthmed-")))

    def prepareSimulatedSubject(self, seed=1_000_000, sex="F", diagnosis="CN", age=70.0):
        request = protocol.SimulatedSubjectRequest(seed=int(seed), sex=sex, diagnosis=diagnosis,
                                                   baseline_age=float(age), ages=[float(age)])
        job = Job(request, None, f"simulated subject {seed}", Path(tempfile.mkdtemp(prefix="synthmed-")))
        job.build = lambda result: results.build_generated(self.scene, result, f"SynthMed simulated subject {seed}")
        return job

    def prepareModelRequest(self, request, title, build=None):
        """A Model-panel request (protocol.DownloadRequest, ImportRequest) run like the others:
        progress, cancel."""
        return Job(request, build or (lambda result: result), title, Path(tempfile.mkdtemp(prefix="synthmed-")))

    def _write_input(self, node, work_dir):
        image = image_from_volume_node(node)  # reads a copy; the node is not modified
        path = Path(work_dir) / "input.nii.gz"
        sitk.WriteImage(image, str(path), useCompression=True)
        return str(path)

    def _write_segmentation(self, segmentation_node, work_dir):
        """The label condition's file (segments numbered 1..N) and {number: segment name}."""
        from SynthMedSlicer.segmentations import numbered_labels_from_segmentation

        reference = segmentation_node.GetNodeReference("referenceImageGeometryRef")
        if reference is None:
            raise InputError(f"segmentation '{segmentation_node.GetName()}' has no reference volume; "
                             "create it on a volume (Segment Editor) first")
        if segmentation_node.GetSegmentation().GetNumberOfSegments() == 0:
            raise InputError(f"segmentation '{segmentation_node.GetName()}' has no segments")
        labels, names = numbered_labels_from_segmentation(segmentation_node, reference)
        path = Path(work_dir) / "label_condition.nii.gz"
        sitk.WriteImage(labels, str(path), useCompression=True)
        return str(path), {str(number): name for number, name in names.items()}

    # -- asynchronous API (the widget) -----------------------------------------------------------

    def submit(self, job):
        if self.job is not None and self.job.state == "running":
            raise InputError("SynthMed is already running; wait for it or cancel it")
        output_dir = job.work_dir / "out"
        output_dir.mkdir(parents=True, exist_ok=True)
        job.request_id = self.client.submit(job.request, output_dir=output_dir)
        job.state = "running"
        self.job = job
        return job

    def poll(self):
        """Progress events of the running job; the job itself once it ended (state says how)."""
        job = self.job
        events = self.client.poll()
        if job is None:
            return events, None
        for event in events:
            if event.get("id") != job.request_id:
                continue
            job.events.append(event)
            kind = event.get("event")
            if kind == protocol.PARTIAL and job.on_partial is not None:
                try:
                    job.on_partial(event.get("partial") or {})
                except Exception as error:  # shown at the end; the final result builds it again
                    job.error = error
            if kind == protocol.RESULT:
                try:
                    self._finish(job, event.get("result") or {})
                except Exception as error:  # building nodes failed: report, do not leave half of them
                    job.state, job.error = "failed", error
                return events, job
            if kind in (protocol.ERROR, protocol.CANCELLED):
                if job.on_abort is not None:
                    job.on_abort()
                job.state = "cancelled" if kind == protocol.CANCELLED else "failed"
                job.error = error_from_event(event) if kind == protocol.ERROR else None
                job.cleanup()
                self.job = None
                return events, job
        return events, None

    def _finish(self, job, result):
        before = set(self._node_ids())
        job.result = result
        try:
            job.nodes = job.build(result)
            job.state = "done"
        except BaseException:
            for node_id in set(self._node_ids()) - before:  # no partial results
                node = self.scene.GetNodeByID(node_id)
                if node is not None:
                    self.scene.RemoveNode(node)
            raise
        finally:
            job.cleanup()
            self.job = None
        return job.nodes

    def _node_ids(self):
        return [self.scene.GetNthNode(i).GetID() for i in range(self.scene.GetNumberOfNodes())]

    def cancel(self):
        if self.job is not None:
            self.client.cancel(self.job.request_id)

    def running(self):
        return self.job is not None and self.job.state == "running"

    def shutdown(self):
        if self.job is not None:
            self.client.cancel(self.job.request_id, grace=0)
            self.client.poll()
            self.job.cleanup()
            self.job = None
        self.client.close()

    # -- models ----------------------------------------------------------------------------------

    def catalogue(self):
        """The model cards the worker knows, with install status (see models.py)."""
        from SynthMedSlicer.models import catalogue

        return catalogue(self.client)
