"""The embedded backend: a local pool of spawned worker processes, each importing TensorFlow
once (work.init_worker) and serving many tasks. They die with the study (PR_SET_PDEATHSIG),
whatever ends it. Nothing here imports Ray."""

from __future__ import annotations

import os

from amc_tf.core.errors import AmcError


class LocalPool:
    name = "embedded"
    exclusive_resources = False  # no resource accounting: the study serialises phone tasks itself

    def __init__(self, workers: int):
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        from amc_tf.core.worker import hold_signals, release_signals
        from amc_tf.services.study.work import init_worker

        self.workers = workers
        old = hold_signals()
        try:
            self._pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=init_worker, initargs=(os.getpid(),))
        finally:
            release_signals(old)

    def describe(self) -> str:
        return f"embedded pool of {self.workers} worker process(es)"

    def submit(self, task: dict, blob: bytes | None, resources: dict | None = None):
        from amc_tf.services.study.work import run_task

        return self._pool.submit(run_task, task, blob)

    def wait(self, handles, timeout: float | None):
        from concurrent.futures import FIRST_COMPLETED, wait

        done, _ = wait(list(handles), timeout=timeout, return_when=FIRST_COMPLETED)
        return list(done)

    def get(self, handle) -> dict:
        from concurrent.futures.process import BrokenProcessPool

        try:
            return handle.result()
        except BrokenProcessPool:
            raise AmcError("a study worker process died (killed, or out of memory); the finished tasks are "
                           "kept: run the same command again to resume") from None

    def close(self) -> None:
        procs = list(getattr(self._pool, "_processes", {}).values())
        self._pool.shutdown(wait=False, cancel_futures=True)
        for p in procs:  # by pid: the workers this pool started
            if p.is_alive():
                p.kill()
        for p in procs:
            p.join(5)
