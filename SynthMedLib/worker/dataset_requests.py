"""The worker's ``dataset`` request (protocol.DatasetRequest): a synthetic dataset written into a
folder (not into the scene), with progress and cancel, by the same pipeline as ``synthmed dataset``.
Running it again with the same request finishes an interrupted dataset.
"""

from SynthMedLib.worker import protocol
from SynthMedLib.worker.pipeline_requests import model_for


def dataset(request: protocol.DatasetRequest, context) -> dict:
    from SynthMedLib.cards import load_card
    from SynthMedLib.pipelines.dataset import make_dataset
    from SynthMedLib.pipelines.dataset_covariates import draw, read_table
    from SynthMedLib.sampling.samplers import check_guidance

    card = load_card(request.model)
    check_guidance(card, request.guidance)
    if request.covariates:
        conditions = read_table(request.covariates, card)
    else:
        conditions = draw(request.distribution, request.n, request.seed, card)
    model = model_for(context, card, "generate", request.device)
    done = make_dataset(model, conditions, request.folder, seed=request.seed, sampler=request.sampler,
                        steps=request.steps, guidance=request.guidance, progress=context.progress)
    return {"folder": request.folder, **done}
