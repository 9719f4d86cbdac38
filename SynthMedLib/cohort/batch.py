"""Render many (subject, age) pairs into a folder, in parallel processes, with progress."""

import os

from SynthMedLib.cohort.bids import write_rendering, write_tables


def _render_and_write(job):
    from SynthMedLib.cohort.renderer import render

    root, subject, age, spacing, head = job
    rendering = render(subject, age, spacing, head=head)
    write_rendering(root, rendering)
    return subject, age, rendering.volumes


def _init_worker():
    import torch

    # Processes, not threads, give the parallelism; each one keeps to a single core.
    torch.set_num_threads(1)


def render_to_folder(root, subjects, ages, spacing=3.0, workers=1, progress=True, head=False):
    """Render every subject at every age into ``root``; returns [(subject, age, volumes)].
    ``ages=None``: each subject once, at its own baseline age (a cross-sectional sample);
    ``head``: with scalp and skull (render's ``head``)."""
    from tqdm import tqdm

    jobs = [(str(root), s, float(a), float(spacing), bool(head)) for s in subjects
            for a in (ages if ages is not None else [s.baseline_age])]
    os.makedirs(root, exist_ok=True)
    bar = tqdm(total=len(jobs), desc="render cohort", unit="scan", disable=not progress)
    rows = []
    try:
        if workers <= 1:
            for job in jobs:
                rows.append(_render_and_write(job))
                bar.update()
        else:
            import multiprocessing

            from SynthMedLib.cohort import warm_up

            warm_up()  # forked workers inherit the template and the aging fields
            methods = multiprocessing.get_all_start_methods()
            context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
            with context.Pool(workers, initializer=_init_worker) as pool:
                for row in pool.imap(_render_and_write, jobs):
                    rows.append(row)
                    bar.update()
    finally:
        bar.close()
    write_tables(root, subjects, rows)
    return rows
