"""What the routes share (the server, its options, the batcher, the metrics), handed to them by FastAPI's Depends.

ServeState is made once per app (create_app) and kept on app.state; a route names what it needs as a parameter
(`server: Server`, `state: State` ...) and FastAPI passes it in. ask and follow are how a route's jobs reach the
batcher's worker thread and come back to the event loop, within the request's timeout.
"""

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request

from peftlab.errors import PeftlabError
from peftlab.serve.inference import Job
from peftlab.serve.limits import ServeOptions
from peftlab.serve.metrics import ServeMetrics
from peftlab.serve.microbatch import MicroBatcher
from peftlab.serve.registry import AdapterServer, ServedAdapter
from peftlab.serve.streaming import TokenFeed


@dataclass
class ServeState:
    server: AdapterServer
    options: ServeOptions
    batcher: MicroBatcher
    metrics: ServeMetrics

    @classmethod
    def start(cls, server: AdapterServer, options: ServeOptions) -> "ServeState":
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

    def _decode(self, tokens: list[int]) -> str:
        with self.server.tokenizer_lock:
            return self.server.tokenizer.decode(tokens, skip_special_tokens=True)

    async def follow(self, label: str, jobs: list[Job]) -> AsyncIterator[tuple[int, str | None, dict | None]]:
        """Generation jobs, row after row: (row, new text, None) as it is made, then (row, None, the answer).

        The pieces of a row join to its answer's text (serve/streaming.py holds them to a prefix of it).
        """
        started, ok, timeout = time.perf_counter(), False, self.options.timeout_s
        feeds = [TokenFeed(asyncio.get_running_loop()) for _ in jobs]
        for job, feed in zip(jobs, feeds, strict=True):
            job.listener = feed.listener
        futures = self.batcher.submit(jobs)
        for feed, future in zip(feeds, futures, strict=True):
            feed.follow(future)
        eos = self.server.tokenizer.eos_token_id
        try:
            for index, (job, feed, future) in enumerate(zip(jobs, feeds, futures, strict=True)):
                shown, limit = "", job.generate_kwargs().get("max_new_tokens")
                async for piece in feed.pieces(self._decode, limit, eos, job.stop, timeout):
                    shown += piece
                    yield index, piece, None
                answer = future.result()
                rest = answer["answer"][len(shown) :] if answer["answer"].startswith(shown) else ""
                if rest:
                    yield index, rest, None
                yield index, None, answer
            ok = True
        except TimeoutError as err:
            raise TimeoutError(f"no answer within {timeout:g} s; the server is busy") from err
        finally:
            for future in futures:
                future.cancel()  # those still queued (a client gone, a timeout): the worker skips them
            self.metrics.request(label, time.perf_counter() - started, ok)


# The dependencies. async: a getter needs no worker thread from FastAPI's pool (sync ones run in it).
async def _state(request: Request) -> ServeState:
    return request.app.state.serve


State = Annotated[ServeState, Depends(_state)]


async def _server(state: State) -> AdapterServer:
    return state.server


async def _options(state: State) -> ServeOptions:
    return state.options


async def _batcher(state: State) -> MicroBatcher:
    return state.batcher


async def _metrics(state: State) -> ServeMetrics:
    return state.metrics


Server = Annotated[AdapterServer, Depends(_server)]
Options = Annotated[ServeOptions, Depends(_options)]
Batcher = Annotated[MicroBatcher, Depends(_batcher)]
Metrics = Annotated[ServeMetrics, Depends(_metrics)]
