"""The JSON API and the page: /, /adapters (list, add, remove), /predict (batched or streamed), /health, /metrics."""

from fastapi import APIRouter, HTTPException
from fastapi.responses import HTMLResponse, StreamingResponse
from pydantic import BaseModel, Field

from peftlab.errors import PeftlabError
from peftlab.serve.inference import BASE, Job, public
from peftlab.serve.limits import allowed_folder, check_texts
from peftlab.serve.page import PAGE
from peftlab.serve.state import Batcher, Metrics, Options, Server, ServeState, State
from peftlab.serve.streaming import sse

router = APIRouter()


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


@router.get("/", response_class=HTMLResponse)
def page() -> str:
    return PAGE


@router.get("/adapters")
def adapters(server: Server) -> dict:
    base = server.base
    return {
        "base": {"name": base.name, "name_or_path": base.name_or_path} if base else None,
        "adapters": [a.describe() for a in list(server.adapters.values())],
    }


@router.post("/adapters", status_code=201)
def add_adapter(request: AddAdapterRequest, server: Server, options: Options) -> dict:
    folder = allowed_folder(request.path, options)
    try:
        return server.add_adapter(request.name, folder).describe()
    except PeftlabError as err:
        raise HTTPException(400, str(err)) from err


@router.delete("/adapters/{name}")
def remove_adapter(name: str, server: Server) -> dict:
    try:
        server.remove_adapter(name)
    except PeftlabError as err:
        raise HTTPException(404, str(err)) from err
    return {"removed": name}


@router.post("/predict")
async def predict(request: PredictRequest, state: State) -> dict:
    served = state.served(request.adapter)
    texts = request.texts if request.texts is not None else [request.text]
    check_texts([t for t in texts if t] + [str(v) for v in (request.fields or {}).values()], state.options)
    try:
        rows = [state.server.features(served, text, request.fields) for text in texts]
    except PeftlabError as err:
        raise HTTPException(400, str(err)) from err
    jobs = [Job(served, served.name, row) for row in rows]
    if request.compare_base:
        jobs += [Job(served, BASE, row) for row in rows]
    if request.stream:
        if served.settings.dataset.task != "generation" or request.texts is not None:
            raise HTTPException(400, "stream: only for a generation adapter and one text (or fields)")
        return StreamingResponse(sides(state, served.name, jobs), media_type="text/event-stream")
    results = [public(r) for r in await state.ask(served.name, jobs)]
    bases = results[len(rows) :] or [None] * len(rows)
    answers = [{**answer, "base": base} for answer, base in zip(results[: len(rows)], bases, strict=True)]
    if request.texts is None:
        return {"adapter": served.name, **answers[0]}
    return {"adapter": served.name, "answers": answers}


async def sides(state: ServeState, label: str, jobs: list[Job]):
    """{"side": "adapter"|"base", "text": piece} as the text is made, then {"side", "answer"}; then [DONE]."""
    try:
        async for index, piece, answer in state.follow(label, jobs):
            side = "base" if index else "adapter"
            yield sse({"side": side, "text": piece} if answer is None else {"side": side, "answer": answer["answer"]})
    except Exception as err:  # the status line is already sent: the error goes in the stream
        yield sse({"error": str(err)})
    yield sse("[DONE]")


@router.get("/health")
def health(server: Server, batcher: Batcher) -> dict:
    base = server.base.name if server.base else None
    return {"status": "ok", "base": base, "adapters": len(server.adapters), "queued": batcher.queue.qsize()}


@router.get("/metrics")
def metrics(recorded: Metrics) -> dict:
    return recorded.snapshot()
