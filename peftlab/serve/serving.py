"""What the HTTP routes share: the server, its options, the batcher they queue jobs on, the metrics they feed."""

import asyncio
import time
from dataclasses import dataclass

from fastapi import HTTPException

from peftlab.errors import PeftlabError
from peftlab.serve.batcher import MicroBatcher
from peftlab.serve.batching import Job
from peftlab.serve.limits import ServeOptions
from peftlab.serve.metrics import ServeMetrics
from peftlab.serve.server import AdapterServer, ServedAdapter


@dataclass
class Serving:
    server: AdapterServer
    options: ServeOptions
    batcher: MicroBatcher
    metrics: ServeMetrics

    @classmethod
    def start(cls, server: AdapterServer, options: ServeOptions) -> "Serving":
        metrics = ServeMetrics()
        return cls(server, options, MicroBatcher(server, options.max_batch, options.max_wait_ms, metrics), metrics)

    def served(self, name: str, status: int = 400) -> ServedAdapter:
        try:
            return self.server.served(name)
        except PeftlabError as err:
            raise HTTPException(status, str(err)) from err

    async def ask(self, label: str, jobs: list[Job]) -> list[dict]:
        """Queue the jobs, wait (up to the timeout) for the batches that answer them; errors become 4xx/504."""
        started, ok = time.perf_counter(), False
        futures = self.batcher.submit(jobs)
        try:
            waiting = asyncio.gather(*(asyncio.wrap_future(f) for f in futures))
            results = await asyncio.wait_for(waiting, self.options.timeout_s)
            ok = True
            return results
        except TimeoutError as err:
            for future in futures:
                future.cancel()  # still queued: the worker skips it
            raise HTTPException(504, f"no answer within {self.options.timeout_s:g} s; the server is busy") from err
        except PeftlabError as err:
            raise HTTPException(400, str(err)) from err
        finally:
            self.metrics.request(label, time.perf_counter() - started, ok)
