"""Timing, peak memory, FLOP counts and errors for bench/gpu_suite.py, on CUDA or (tiny mode) the CPU.

Only torch at module level: the suite runs on lent GPU machines whose image has torch but not the
project's other dependencies.
"""

import gc
import statistics
import time

import torch

GIB = 1024 ** 3


def sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def free(device):
    gc.collect()
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()


def is_oom(error):
    return isinstance(error, torch.cuda.OutOfMemoryError) or "out of memory" in str(error).lower()


def measure(fn, device, repeats=3, warmup=1):
    """Run ``fn`` warmup + repeats times; median wall seconds of the repeats (synchronised before and
    after each, so the host clock brackets the device work), peak allocated/reserved bytes over all
    runs (CUDA; None on the CPU) and what the last run returned."""
    cuda = torch.device(device).type == "cuda"
    free(device)
    resident = torch.cuda.memory_allocated(device) if cuda else None
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    out, runs = None, []
    for index in range(warmup + repeats):
        out = None
        sync(device)
        start = time.perf_counter()
        out = fn()
        sync(device)
        if index >= warmup:
            runs.append(time.perf_counter() - start)
    row = {"seconds": statistics.median(runs), "runs": [round(r, 5) for r in runs]}
    if cuda:
        row.update(peak_gib=torch.cuda.max_memory_allocated(device) / GIB,
                   reserved_gib=torch.cuda.max_memory_reserved(device) / GIB, resident_gib=resident / GIB)
    return row, out


def peak_after_failure(device):
    if torch.device(device).type != "cuda":
        return {}
    return {"peak_gib": torch.cuda.max_memory_allocated(device) / GIB,
            "reserved_gib": torch.cuda.max_memory_reserved(device) / GIB}


def relative_error(value, reference):
    """RMS difference over the reference's standard deviation (as bench/sampler_benchmark.py)."""
    value, reference = value.detach().double().cpu(), reference.detach().double().cpu()
    if value.shape != reference.shape:
        raise ValueError(f"shapes differ: {tuple(value.shape)} vs {tuple(reference.shape)}")
    if not torch.isfinite(value).all():
        return float("nan")
    scale = reference.std().item() or 1.0
    return (value - reference).pow(2).mean().sqrt().item() / scale


def count_flops(fn):
    """Floating-point operations of ``fn`` (convolutions, matrix products, attention), counted by
    torch's FlopCounterMode; call it on meta tensors so that nothing is computed or allocated."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def matmul_rate(device, size=8192, repeats=10):
    """Measured bf16 (CUDA) / fp32 (CPU) matrix-product rate in TFLOP/s on random data: the ceiling
    the networks' FLOP floors are compared against."""
    cuda = torch.device(device).type == "cuda"
    size = size if cuda else 512
    dtype = torch.bfloat16 if cuda else torch.float32
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    sync(device)
    seconds = (time.perf_counter() - start) / repeats
    return {"dtype": str(dtype).replace("torch.", ""), "size": size, "tflops": 2 * size ** 3 / seconds / 1e12}


def device_info(device):
    import platform

    info = {"torch": torch.__version__, "python": platform.python_version(), "device": str(device)}
    try:
        import monai

        info["monai"] = monai.__version__
    except ImportError:
        info["monai"] = None
    if torch.device(device).type == "cuda":
        props = torch.cuda.get_device_properties(device)
        free_bytes, total = torch.cuda.mem_get_info(device)
        info.update(name=props.name, total_gib=total / GIB, multiprocessors=props.multi_processor_count,
                    capability=f"{props.major}.{props.minor}", cuda=torch.version.cuda,
                    cudnn=torch.backends.cudnn.version(), cudnn_benchmark=torch.backends.cudnn.benchmark,
                    cudnn_allow_tf32=torch.backends.cudnn.allow_tf32,
                    matmul_allow_tf32=torch.backends.cuda.matmul.allow_tf32,
                    # what the process holds outside torch's allocator (CUDA context, library handles)
                    context_gib=(total - free_bytes - torch.cuda.memory_reserved(device)) / GIB)
    else:
        info.update(name=platform.processor() or platform.machine(), threads=torch.get_num_threads())
    return info
