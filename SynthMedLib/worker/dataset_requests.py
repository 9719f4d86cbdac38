"""The worker's ``dataset`` request: a synthetic dataset written into a folder (not into the
scene), with progress and cancel, by the same pipeline as ``synthmed dataset``.

params: model, folder, and either ``covariates`` (a table's path) or ``distribution`` (a spec, as
``synthmed dataset --distribution``) with ``n``; optional seed, sampler, steps, guidance, device.
Running it again with the same params finishes an interrupted dataset.
"""

from SynthMedLib.errors import InputError
from SynthMedLib.worker.pipeline_requests import model_for


def dataset(params, context):
    from SynthMedLib.cards import load_card
    from SynthMedLib.pipelines.dataset import make_dataset
    from SynthMedLib.pipelines.dataset_covariates import draw, read_table
    from SynthMedLib.sampling.samplers import check_guidance

    card = load_card(params.get("model", ""))
    folder = params.get("folder")
    if not isinstance(folder, str) or not folder:
        raise InputError("give the dataset a folder to be written into")
    guidance = float(params.get("guidance", 1.0))
    check_guidance(card, guidance)
    seed = int(params.get("seed", 0))
    if params.get("covariates"):
        conditions = read_table(params["covariates"], card)
    elif isinstance(params.get("distribution"), dict):
        conditions = draw(params["distribution"], int(params.get("n", 0)), seed, card)
    else:
        raise InputError("give the dataset's conditions: a covariates table, or a distribution and n")
    model = model_for(context, card, "generate", params.get("device", "auto"))
    done = make_dataset(model, conditions, folder, seed=seed, sampler=params.get("sampler"),
                        steps=params.get("steps"), guidance=guidance, progress=context.progress)
    return {"folder": folder, **done}
