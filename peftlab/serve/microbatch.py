"""The request queue and its one worker thread: concurrent requests share model calls instead of waiting on a lock.

Written here rather than taken from a library: the grouping rule (mixable adapters in one forward, per-head parts)
is peftlab's own, and the queue is a few lines over the standard library's Queue and Future.
"""

import queue
import threading
import time
from concurrent.futures import Future

from peftlab.serve.inference import Job, run_jobs
from peftlab.serve.metrics import ServeMetrics
from peftlab.serve.registry import AdapterServer

_STOP = object()


class MicroBatcher:
    """Take the first waiting job, then more until max_batch jobs or max_wait_ms have passed; answer them together."""

    def __init__(self, server: AdapterServer, max_batch: int, max_wait_ms: float, metrics: ServeMetrics):
        self.server, self.max_batch, self.max_wait = server, max_batch, max_wait_ms / 1000
        self.metrics = metrics
        self.queue: queue.Queue = queue.Queue()
        self.thread = threading.Thread(target=self._work, name="peftlab-batcher", daemon=True)
        self.thread.start()

    def submit(self, jobs: list[Job]) -> list[Future]:
        futures = [Future() for _ in jobs]
        for job, future in zip(jobs, futures, strict=True):
            self.queue.put((job, future))
        return futures

    def close(self) -> None:
        self.queue.put(_STOP)
        self.thread.join(timeout=30)

    def _take(self) -> tuple[list, bool]:
        """(the jobs of the next batch, whether the worker was asked to stop)."""
        first = self.queue.get()
        if first is _STOP:
            return [], True
        taken, deadline = [first], time.monotonic() + self.max_wait
        while len(taken) < self.max_batch:
            try:
                item = self.queue.get(timeout=max(deadline - time.monotonic(), 0))
            except queue.Empty:
                break
            if item is _STOP:
                return taken, True
            taken.append(item)
        return taken, False

    def _work(self) -> None:
        stop = False
        while not stop:
            taken, stop = self._take()
            live = [(job, future) for job, future in taken if future.set_running_or_notify_cancel()]  # not timed out
            if not live:
                continue
            try:
                results = run_jobs(self.server, [job for job, _ in live])
            except Exception as err:  # the requests get it; the worker keeps serving
                results = [err] * len(live)
            self.metrics.batch(len(live))
            for (_, future), result in zip(live, results, strict=True):
                if isinstance(result, Exception):
                    future.set_exception(result)
                else:
                    future.set_result(result)
