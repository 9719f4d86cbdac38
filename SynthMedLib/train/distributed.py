"""Single-process or ``torchrun`` multi-process training behind one small object.

torchrun sets RANK/WORLD_SIZE/MASTER_ADDR; without them everything runs in this process. CPUs
use the gloo backend, GPUs nccl.
"""

import os

import torch
import torch.distributed as dist


class Distributed:
    def __init__(self):
        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.active = self.world_size > 1
        if self.active and not dist.is_initialized():
            backend = "nccl" if torch.cuda.is_available() else "gloo"
            if torch.cuda.is_available():
                torch.cuda.set_device(self.local_rank)
            dist.init_process_group(backend=backend)

    def device(self, wanted="auto"):
        """The torch device this process trains on: a config's ``device`` ("auto", "cpu",
        "cuda"); "auto" is this rank's GPU where there is one."""
        if wanted not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be auto, cpu or cuda, not {wanted!r}")
        if wanted == "cpu" or (wanted == "auto" and not torch.cuda.is_available()):
            return torch.device("cpu")
        if not torch.cuda.is_available():
            raise RuntimeError("the training config asks for device 'cuda', but torch sees no GPU")
        return torch.device("cuda", self.local_rank if self.active else torch.cuda.current_device())

    @property
    def is_main(self):
        return self.rank == 0

    def wrap(self, module):
        if not self.active:
            return module
        device = next(module.parameters()).device
        ids = [device.index] if device.type == "cuda" else None
        return torch.nn.parallel.DistributedDataParallel(module, device_ids=ids)

    def barrier(self):
        if self.active:
            dist.barrier()

    def gather(self, obj):
        """A list with every rank's ``obj`` (on every rank)."""
        if not self.active:
            return [obj]
        result = [None] * self.world_size
        dist.all_gather_object(result, obj)
        return result

    def mean(self, value):
        if not self.active:
            return float(value)
        # nccl reduces GPU tensors only; gloo CPU ones.
        on = f"cuda:{self.local_rank}" if dist.get_backend() == "nccl" else "cpu"
        tensor = torch.tensor([float(value)], dtype=torch.float64, device=on)
        dist.all_reduce(tensor)
        return float(tensor.item()) / self.world_size

    def close(self):
        if self.active and dist.is_initialized():
            dist.destroy_process_group()
