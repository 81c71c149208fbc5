"""HTTP front of an AdapterServer: a JSON API, OpenAI-style routes for generation adapters, and one page.

Every answer goes through the micro-batcher (serve/microbatch.py), so concurrent requests share model calls.
"""

from contextlib import asynccontextmanager

from fastapi import FastAPI, HTTPException
from fastapi.responses import HTMLResponse, StreamingResponse
from pydantic import BaseModel, Field

from peftlab.errors import PeftlabError
from peftlab.serve.inference import BASE, Job, public
from peftlab.serve.limits import ServeOptions, allowed_folder, check_texts, install_guard
from peftlab.serve.openai_routes import add_openai_routes
from peftlab.serve.page import PAGE
from peftlab.serve.registry import AdapterServer
from peftlab.serve.state import Serving, sse


class PredictRequest(BaseModel):
    adapter: str
    text: str | None = None
    texts: list[str] | None = None  # a batch: answered in the same micro-batches as other requests
    fields: dict[str, object] | None = None  # the row's columns, for tasks with several inputs
    compare_base: bool = False  # also answer with the base (adapters off): one more row per text
    stream: bool = False  # generation, one text: server-sent events as the text is made (the page uses it)


class AddAdapterRequest(BaseModel):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    path: str  # a run folder (or its adapter/) below one of the server's --adapter-root folders


def create_app(server: AdapterServer, options: ServeOptions | None = None) -> FastAPI:
    serving = Serving.start(server, options or ServeOptions())

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        serving.batcher.close()

    app = FastAPI(title="peftlab serve", summary="one base model, many adapters", lifespan=lifespan)
    app.state.serving = serving
    install_guard(app, serving.options)
    add_openai_routes(app, serving)

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        return PAGE

    @app.get("/adapters")
    def adapters() -> dict:
        base = server.base
        return {
            "base": {"name": base.name, "name_or_path": base.name_or_path} if base else None,
            "adapters": [a.describe() for a in list(server.adapters.values())],
        }

    @app.post("/adapters", status_code=201)
    def add_adapter(request: AddAdapterRequest) -> dict:
        folder = allowed_folder(request.path, serving.options)
        try:
            return server.add_adapter(request.name, folder).describe()
        except PeftlabError as err:
            raise HTTPException(400, str(err)) from err

    @app.delete("/adapters/{name}")
    def remove_adapter(name: str) -> dict:
        try:
            server.remove_adapter(name)
        except PeftlabError as err:
            raise HTTPException(404, str(err)) from err
        return {"removed": name}

    @app.post("/predict")
    async def predict(request: PredictRequest) -> dict:
        served = serving.served(request.adapter)
        texts = request.texts if request.texts is not None else [request.text]
        check_texts([t for t in texts if t] + [str(v) for v in (request.fields or {}).values()], serving.options)
        try:
            rows = [server.features(served, text, request.fields) for text in texts]
        except PeftlabError as err:
            raise HTTPException(400, str(err)) from err
        jobs = [Job(served, served.name, row) for row in rows]
        if request.compare_base:
            jobs += [Job(served, BASE, row) for row in rows]
        if request.stream:
            if served.settings.dataset.task != "generation" or request.texts is not None:
                raise HTTPException(400, "stream: only for a generation adapter and one text (or fields)")
            return StreamingResponse(sides(served.name, jobs), media_type="text/event-stream")
        results = [public(r) for r in await serving.ask(served.name, jobs)]
        bases = results[len(rows) :] or [None] * len(rows)
        answers = [{**answer, "base": base} for answer, base in zip(results[: len(rows)], bases, strict=True)]
        if request.texts is None:
            return {"adapter": served.name, **answers[0]}
        return {"adapter": served.name, "answers": answers}

    async def sides(label: str, jobs: list[Job]):
        """{"side": "adapter"|"base", "text": piece} as the text is made, then {"side", "answer"}; then [DONE]."""
        try:
            async for index, piece, answer in serving.follow(label, jobs):
                side = "base" if index else "adapter"
                yield sse(
                    {"side": side, "text": piece} if answer is None else {"side": side, "answer": answer["answer"]}
                )
        except Exception as err:  # the status line is already sent: the error goes in the stream
            yield sse({"error": str(err)})
        yield sse("[DONE]")

    @app.get("/health")
    def health() -> dict:
        base = server.base.name if server.base else None
        return {"status": "ok", "base": base, "adapters": len(server.adapters), "queued": serving.batcher.queue.qsize()}

    @app.get("/metrics")
    def metrics() -> dict:
        return serving.metrics.snapshot()

    return app
