"""Coding many files: each input file becomes one output file, spread over worker processes on
this machine (each loads a model once) and, under torchrun, over processes and machines (rank r
takes files r, r + world, ...). Every rank gets every outcome back in input order, so one process
can print one summary."""
from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .distributed import gather_rows, my_indices
from .errors import UserError
from .io.files import check_free


@dataclass
class FileOutcome:
    """One file of a batch: its output and what was measured, or the one-line error."""
    source: Path
    output: Path | None = None
    bytes: int = 0
    pixels: int = 0
    psnr: float | None = None
    error: str | None = None


def default_workers(files: int) -> int:
    """Worker processes for a batch of ``files``: one per core this process may use, at most one
    per file."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cores, files))


def _one(work: Callable, src: Path, dst: Path, force: bool, args: tuple) -> FileOutcome:
    """``work(src, dst, outcome, *args)`` fills the outcome; a UserError becomes the file's error."""
    o = FileOutcome(src)
    try:
        check_free(dst, src, force)
        work(src, dst, o, *args)
        o.output = dst
    except UserError as e:
        o.error = str(e)
    return o


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def run_files(jobs: list[tuple[Path, Path]], work: Callable, args: tuple, force: bool, workers: int = 1,
              on_file: Callable[[FileOutcome], None] | None = None) -> list[FileOutcome]:
    """Run ``work`` (a module-level function, so worker processes can import it) on each (source,
    destination) job; -> one FileOutcome per job, in job order, on every torchrun rank.
    ``workers`` > 1 starts that many processes with the machine's cores shared between them; each
    keeps its models loaded between files. ``on_file`` sees this rank's outcomes as they finish."""
    mine = my_indices(len(jobs))
    todo = [jobs[i] for i in mine]
    done: dict[int, FileOutcome] = {}
    if workers <= 1 or len(todo) <= 1:
        for k, (src, dst) in enumerate(todo):
            done[k] = _one(work, src, dst, force, args)
            if on_file:
                on_file(done[k])
    else:
        import multiprocessing

        import torch

        threads = max(1, torch.get_num_threads() // workers)
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                 initializer=_init_worker, initargs=(threads,)) as pool:
            futures = {pool.submit(_one, work, src, dst, force, args): k for k, (src, dst) in enumerate(todo)}
            for f in as_completed(futures):
                done[futures[f]] = f.result()
                if on_file:
                    on_file(done[futures[f]])
    return gather_rows(mine, [done[k] for k in range(len(todo))], len(jobs))
