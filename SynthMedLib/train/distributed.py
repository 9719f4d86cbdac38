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
            dist.init_process_group(backend=backend)

    @property
    def is_main(self):
        return self.rank == 0

    def wrap(self, module):
        if not self.active:
            return module
        return torch.nn.parallel.DistributedDataParallel(module)

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
        tensor = torch.tensor([float(value)], dtype=torch.float64)
        dist.all_reduce(tensor)
        return float(tensor.item()) / self.world_size

    def close(self):
        if self.active and dist.is_initialized():
            dist.destroy_process_group()
