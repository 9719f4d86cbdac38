"""dataset: a whole synthetic dataset as a BIDS derivative, resumable and split across processes.

conditions per sample (table or distribution) -> per-sample seed from (dataset seed, index) ->
the samples of this process (index % world size == rank) -> generate, one sample at a time, each
sample's files written atomically with its sidecar last -> (all processes) the tables gathered by
rank 0 -> participants.tsv, volumes.tsv, dseg.tsv, dataset_description.json -> manifest.tsv last.

Sample i depends only on (model, dataset seed, i, its conditions): the same files whatever the
number of processes and however often the run was interrupted. Processes come from ``torchrun``
(RANK / WORLD_SIZE / LOCAL_RANK); without it, one process does everything.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from SynthMedLib.errors import InputError
from SynthMedLib.model import Model, as_model
from SynthMedLib.pipelines import dataset_layout as layout
from SynthMedLib.sampling.progress import Progress

SEED_STREAM = 2  # SeedSequence([dataset seed, stream, index]) for each sample's noise


@dataclass
class Ranks:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @classmethod
    def from_environment(cls) -> Ranks:
        return cls(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                   int(os.environ.get("LOCAL_RANK", 0)))

    def mine(self, count: int) -> list[int]:
        return list(range(self.rank, count, self.world))


def sample_seed(dataset_seed: int, index: int) -> int:
    """A 31-bit noise seed of sample ``index``: independent of the other samples and of the split."""
    return int(np.random.SeedSequence([int(dataset_seed), SEED_STREAM, int(index)]).generate_state(1)[0] >> 1)


def make_dataset(model: Model, conditions: list[dict], out: str | Path, seed: int = 0, sampler=None, steps=None,
                 guidance: float = 1.0, ranks: Ranks | None = None, progress=None) -> dict:
    """Write (or finish) the dataset; returns {"made", "skipped", "samples"} for this process."""
    from SynthMedLib.pipelines.generate import generate

    model = as_model(model).load_for("generate")
    ranks = ranks or Ranks()
    out = Path(out)
    progress = Progress.wrap(progress)
    request = layout.request_record(model, conditions, seed, sampler, steps, guidance)
    if ranks.rank == 0:
        layout.start_or_resume(out, request)
    _barrier(ranks)
    if ranks.rank != 0:
        layout.check_request(out, request)
    mine = ranks.mine(len(conditions))
    made = skipped = 0
    progress.start("samples", len(mine))
    for done, index in enumerate(mine, 1):
        if layout.sample_done(out, index, model.card):
            skipped += 1
        else:
            sample = generate(model, conditions[index], count=1, seed=sample_seed(seed, index), sampler=sampler,
                              steps=steps, guidance=guidance)[0]
            layout.write_sample(out, index, sample, model.card)
            made += 1
        progress.step("samples", done, len(mine))
    progress.close()
    rows = [layout.sample_row(out, index, conditions[index], model.card) for index in mine]
    rows = _gather(rows, ranks)
    if ranks.rank == 0:
        rows.sort(key=lambda row: row["participant_id"])
        layout.write_tables(out, rows, model, request)
        layout.write_manifest(out)
    _barrier(ranks)
    return {"made": made, "skipped": skipped, "samples": len(mine)}


def _barrier(ranks):
    if ranks.world > 1:
        import torch.distributed as dist

        dist.barrier()


def _gather(rows, ranks):
    if ranks.world == 1:
        return rows
    import torch.distributed as dist

    gathered = [None] * ranks.world if ranks.rank == 0 else None
    dist.gather_object(rows, gathered, dst=0)
    return [row for part in gathered for row in part] if ranks.rank == 0 else []


def init_distributed(ranks: Ranks, device: str) -> None:
    """Join torchrun's process group: gloo on CPUs, nccl on CUDA GPUs."""
    if ranks.world <= 1:
        return
    import torch.distributed as dist

    if not dist.is_initialized():
        backend = "nccl" if str(device).startswith("cuda") else "gloo"
        dist.init_process_group(backend)
    if dist.get_world_size() != ranks.world:
        raise InputError("WORLD_SIZE does not match the process group")
