"""The worker's simulated-subject request: one cohort subject rendered at several ages (image +
labels + true volumes), which the Slicer module offers as a test subject for aging and progression.

The worker does not import the cohort (an evaluation tool, not part of the engine): the Slicer
module starts it with ``--requests SynthMedLib.cohort.worker_request``, which adds ``REQUESTS``.
"""

from SynthMedLib import __version__
from SynthMedLib.worker.files import image_entry
from SynthMedLib.worker.protocol import SimulatedSubjectRequest


def simulated_subject(request: SimulatedSubjectRequest, context) -> dict:
    # Imported here, not above: the worker imports this module at start and must answer within a second.
    from SynthMedLib.cohort import SEGMENTS, Subject, render

    subject = Subject(request.seed, request.sex, request.diagnosis, request.baseline_age)
    ages = request.ages or [subject.baseline_age]
    images, volumes = [], []
    context.progress.start("rendering", len(ages))
    for step, age in enumerate(ages, start=1):
        rendering = render(subject, age, spacing=request.spacing)
        provenance = {"synthetic": True, "source": "SynthMedLib.cohort (simulated subject)", "seed": subject.seed,
                      "sex": subject.sex, "diagnosis": subject.diagnosis, "age": age, "version": __version__}
        name = f"sub-{subject.participant_id}_age{age:g}"
        images.append(image_entry(context, rendering.image, f"{name}_T1w", "image", {"age": age}, provenance))
        images.append(image_entry(context, rendering.labels, f"{name}_dseg", "labels", {"age": age}, provenance,
                                  labels=True))
        volumes.append({"age": age, **{k: float(v) for k, v in rendering.volumes.items()}})
        context.progress.step("rendering", step, len(ages))
    return {"images": images, "volumes": volumes, "indexName": "age", "segments": SEGMENTS}


REQUESTS = {SimulatedSubjectRequest.TYPE: simulated_subject}
