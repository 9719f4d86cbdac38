"""Markdown for bench/gpu_suite.py's results: a per-model summary ("what runs on which GPU") and
every case's rows. Pure functions of the results dict, so the report can be remade from the JSON:

    python bench/gpu_report.py bench/results/gpu/nvidia-h200.json > bench/results/gpu/nvidia-h200.md
"""

import json
import sys

GIB_TO_GB = 1024 ** 3 / 1e9
# Common GPU memory sizes (GB, as sold); a case "runs" where its peak reserved memory plus the CUDA
# context fits in 95% of the card (the rest: driver, display, fragmentation between calls).
CARD_GB = (8, 12, 16, 24, 32, 40, 48, 80, 141)
USABLE = 0.95
SAMPLES = {"brainldm": "SynthMed DPM++2M-{steps} {p}", "demo-brain": "SynthMed DPM++2M-{steps} {p}",
           "maisi256": "euler-30 {p}, whole decode"}
DECODES = {"maisi512": "tiled 64 norm=tile {p}"}


def rows_of(results, model=None):
    for case in results.get("cases", []):
        for row in case.get("rows", []):
            if model is None or row.get("model") == model:
                yield row


def find(results, model, what, variant):
    for row in rows_of(results, model):
        if row.get("what") == what and row.get("variant") == variant and row.get("status") == "ok":
            return row
    return None


def smallest_card(reserved_gib, context_gib):
    need = (reserved_gib + context_gib) * GIB_TO_GB
    return next((gb for gb in CARD_GB if need <= USABLE * gb), None)


def summary(results):
    """Per model and precision: step, decode and whole-sample seconds, peak memory, smallest card,
    speed-up over MONAI's reference loop (fp32) and the UNet step's ratio to its FLOP floor."""
    meta = results.get("meta", {})
    context = float(meta.get("context_gib") or 0.5)
    steps = meta.get("steps", {}).get("default", 15)
    monai_steps = meta.get("steps", {}).get("monai", 50)
    peak_rate = next((r["tflops"] for r in rows_of(results, "-") if r.get("what") == "matrix product"), None)
    out = []
    for model in ("demo-brain", "brainldm", "maisi256", "maisi512"):
        monai = find(results, model, "sample", f"MONAI loop DDIM-{monai_steps} fp32")
        for p in meta.get("precisions", ["fp32", "bf16", "fp16"]):
            unet = find(results, model, "unet step", p)
            decode = find(results, model, "decode", DECODES.get(model, "whole {p}").format(p=p))
            whole = find(results, model, "sample", SAMPLES.get(model, "").format(steps=steps, p=p))
            if not (unet or decode or whole):
                continue
            peaks = [r for r in (unet, decode, whole) if r and r.get("reserved_gib") is not None]
            entry = {"model": model, "precision": p, "unet_s": unet and unet["seconds"],
                     "decode_s": decode and decode["seconds"], "decode": decode and decode["variant"]}
            if whole:
                entry["sample_s"], entry["sample_from"] = whole["seconds"], "measured"
            elif unet and decode:
                flow_steps = 30 if model.startswith("maisi") else steps
                entry["sample_s"] = flow_steps * unet["seconds"] + decode["seconds"]
                entry["sample_from"] = f"{flow_steps} steps x step + decode"
            if peaks:
                entry["peak_gib"] = max(r["peak_gib"] for r in peaks)
                entry["reserved_gib"] = max(r["reserved_gib"] for r in peaks)
                entry["smallest_card_gb"] = smallest_card(entry["reserved_gib"], context)
            if monai and entry.get("sample_s") and model in SAMPLES and not model.startswith("maisi"):
                entry["speedup_vs_monai"] = monai["seconds"] / entry["sample_s"]
                entry["error"] = whole and whole.get("error")
                entry["monai_error"] = monai.get("error")
            if unet and unet.get("tflop") and peak_rate:
                entry["unet_floor_ratio"] = unet["seconds"] / (unet["tflop"] / peak_rate)
            if decode and decode.get("tflop") and peak_rate:
                entry["decode_floor_ratio"] = decode["seconds"] / (decode["tflop"] / peak_rate)
            out.append(entry)
    return out


def _fmt(value, digits=3):
    if value is None:
        return "-"
    if isinstance(value, float):
        if value != value:
            return "nan"
        if abs(value) >= 100:
            return f"{value:.0f}"
        return f"{value:.{digits}g}"
    return str(value)


def markdown(results):
    meta = results.get("meta", {})
    lines = [f"# GPU suite: {meta.get('name', '?')} ({meta.get('date', '?')})", "",
             f"torch {meta.get('torch')}, CUDA {meta.get('cuda', '-')}, cuDNN {meta.get('cudnn', '-')}, "
             f"MONAI {meta.get('monai')}; device memory {_fmt(meta.get('total_gib'))} GiB, CUDA context "
             f"{_fmt(meta.get('context_gib'))} GiB; suite {_fmt(meta.get('suite_seconds'))} s of a "
             f"{_fmt(meta.get('budget_seconds'))} s budget{'; TINY sizes (CPU check)' if meta.get('tiny') else ''}.",
             "", "Peaks are torch.cuda.max_memory_allocated / max_memory_reserved with the pipeline's networks "
             "resident. Errors: RMS difference / reference std, against the row named in 'vs'.", "",
             "## Summary", "",
             "| model | precision | UNet step s | decode s | s per sample | peak alloc GiB | peak reserved GiB "
             "| smallest card GB | x MONAI loop | image error (MONAI loop's) | step / FLOP floor "
             "| decode / FLOP floor |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for e in summary(results):
        error = "-" if e.get("error") is None else f"{_fmt(e['error'])} ({_fmt(e.get('monai_error'))})"
        lines.append(f"| {e['model']} | {e['precision']} | {_fmt(e['unet_s'])} | {_fmt(e['decode_s'])} "
                     f"| {_fmt(e.get('sample_s'))} | {_fmt(e.get('peak_gib'))} | {_fmt(e.get('reserved_gib'))} "
                     f"| {_fmt(e.get('smallest_card_gb'))} | {_fmt(e.get('speedup_vs_monai'))} | {error} "
                     f"| {_fmt(e.get('unet_floor_ratio'))} | {_fmt(e.get('decode_floor_ratio'))} |")
    for case in results.get("cases", []):
        lines += ["", f"## {case['name']}: {case['status']}"
                  + (f" ({case['seconds']:.1f} s)" if "seconds" in case else "")]
        if case.get("error"):
            lines += ["", "```", case["error"], "```"]
        if not case.get("rows"):
            continue
        lines += ["", "| model | what | variant | s | peak alloc GiB | reserved GiB | TFLOP | TFLOP/s | error | vs "
                  "| status / note |", "|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in case["rows"]:
            note = r.get("status", "")
            extra = [r.get("note")] + [f"{k} {_fmt(r[k])}" for k in ("compile_seconds", "seconds_per_sample",
                                                                     "error_vs_fp32_same_steps") if k in r]
            note += "".join(f"; {x}" for x in extra if x)
            lines.append(f"| {r.get('model')} | {r.get('what')} | {r.get('variant')} | {_fmt(r.get('seconds'))} "
                         f"| {_fmt(r.get('peak_gib'))} | {_fmt(r.get('reserved_gib'))} | {_fmt(r.get('tflop'))} "
                         f"| {_fmt(r.get('tflops'))} | {_fmt(r.get('error'))} | {r.get('error_vs', '-')} | {note} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown(json.loads(open(sys.argv[1]).read())), end="")
