"""OpenAI-compatible routes for generation adapters: /v1/models, /v1/completions, /v1/chat/completions.

`model` names an adapter (or "base"). An adapter's prompt (or the last user message) fills its task's first input
and is formatted as in training, so the answer is /predict's; a chat-trained adapter (dataset.task=chat) gets the
whole conversation, rendered through the model's chat template by its training encoder. "base" continues the prompt
as it is (chat: through the tokenizer's chat template when it has one). `stream: true` sends the text as the batched
generate() makes it, as server-sent events in OpenAI's chunk format (serve/streaming.py), ending with `data: [DONE]`.
"""

import time
import uuid
from typing import Literal

from fastapi import APIRouter, HTTPException
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from peftlab.config.tasks import CAUSAL_SHAPES
from peftlab.data.conversations import open_for_answer
from peftlab.errors import PeftlabError
from peftlab.serve.inference import BASE, Job, raw_prompt_features
from peftlab.serve.limits import check_max_tokens, check_texts
from peftlab.serve.registry import AdapterServer, ServedAdapter
from peftlab.serve.state import Server, ServeState, State
from peftlab.serve.streaming import sse

GENERATION_SHAPES = (*CAUSAL_SHAPES, "seq2seq")
DEFAULT_MAX_TOKENS = 16  # OpenAI's completions default, when the adapter's own settings name none

router = APIRouter(prefix="/v1")


class Sampling(BaseModel):
    model: str
    max_tokens: int | None = None
    temperature: float | None = Field(None, ge=0, le=2)  # 0: greedy; None: the adapter's training settings
    top_p: float | None = Field(None, gt=0, le=1)
    stop: str | list[str] | None = None
    stream: bool = False
    n: Literal[1] = 1


class CompletionRequest(Sampling):
    prompt: str | list[str]


class Message(BaseModel):
    role: str
    content: str


class ChatRequest(Sampling):
    messages: list[Message] = Field(min_length=1)
    max_completion_tokens: int | None = None


def generation_settings(served: ServedAdapter, request: Sampling, max_tokens: int | None, ceiling: int) -> dict:
    settings = dict(served.settings.dataset.generation)
    settings["max_new_tokens"] = min(max_tokens or settings.get("max_new_tokens") or DEFAULT_MAX_TOKENS, ceiling)
    if request.temperature == 0:
        settings["do_sample"] = False
        for key in ("temperature", "top_p", "top_k"):
            settings.pop(key, None)
    elif request.temperature is not None:
        settings.update(do_sample=True, temperature=request.temperature)
    if request.top_p is not None and settings.get("do_sample"):
        settings["top_p"] = request.top_p
    return settings


def _piece(index: int, text: str | None, chat: bool, finish: str | None = None) -> dict:
    if chat:
        delta = {} if text is None else {"content": text}
        return {"index": index, "delta": delta, "finish_reason": finish}
    return {"index": index, "text": text or "", "logprobs": None, "finish_reason": finish}


def target(state: ServeState, model: str) -> tuple[ServedAdapter, str]:
    """(the adapter whose head runs the request, the adapter name or BASE)."""
    if model == "base":
        heads = [a for a in state.server.adapters.values() if a.settings.shape in GENERATION_SHAPES]
        if not heads:
            raise HTTPException(404, "model base: no generation adapter is loaded to lend the base its LM head")
        return heads[0], BASE
    served = state.served(model, status=404)
    if served.settings.shape not in GENERATION_SHAPES:
        raise HTTPException(400, f"model {model}: a {served.settings.dataset.task} adapter; use POST /predict")
    return served, model


def prepare(state: ServeState, request: Sampling, prompts: list[str | dict], max_tokens: int | None, chat_prompt=None):
    """The request's Jobs: one per prompt (a text, or a row's fields), with its decoding settings and stop strings;
    limits checked first."""
    check_texts([p for p in prompts if isinstance(p, str)], state.options)
    check_max_tokens(max_tokens, state.options)
    served, adapter = target(state, request.model)
    settings = generation_settings(served, request, max_tokens, state.options.max_tokens)
    stop = (request.stop,) if isinstance(request.stop, str) else tuple(request.stop or ())
    server = state.server
    try:
        if adapter == BASE:
            rows = [raw_prompt_features(server, served, chat_prompt or p) for p in prompts]
        else:
            rows = [server.features(served, *((None, p) if isinstance(p, dict) else (p, None))) for p in prompts]
    except PeftlabError as err:
        raise HTTPException(400, str(err)) from err
    return [Job(served, adapter, r, settings, stop) for r in rows]


async def respond(state: ServeState, request: Sampling, jobs: list[Job], chat: bool):
    kind = "chat.completion" if chat else "text_completion"
    head = {"id": f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}", "created": int(time.time())}
    head["model"] = request.model
    if request.stream:
        chunk = {**head, "object": "chat.completion.chunk" if chat else kind}
        return StreamingResponse(stream(state, request.model, chunk, jobs, chat), media_type="text/event-stream")
    answers = await state.ask(request.model, jobs)
    prompt_tokens, completion_tokens = (sum(a["usage"][i] for a in answers) for i in (0, 1))
    usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens}
    usage["total_tokens"] = prompt_tokens + completion_tokens
    choices = [
        {"index": i, "finish_reason": a["finish_reason"]}
        | ({"message": {"role": "assistant", "content": a["answer"]}} if chat else {"text": a["answer"]})
        | ({} if chat else {"logprobs": None})
        for i, a in enumerate(answers)
    ]
    return {**head, "object": kind, "choices": choices, "usage": usage}


async def stream(state: ServeState, label: str, chunk: dict, jobs: list[Job], chat: bool):
    """Each choice in turn: its pieces as they come, its finish; then [DONE]."""
    opened = set()
    try:
        async for index, piece, answer in state.follow(label, jobs):
            if chat and index not in opened:
                opened.add(index)
                opening = {"index": index, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
                yield sse({**chunk, "choices": [opening]})
            finish = None if answer is None else answer["finish_reason"]
            yield sse({**chunk, "choices": [_piece(index, piece, chat, finish)]})
    except Exception as err:  # the status line is already sent: the error goes in the stream
        yield sse({"error": {"message": str(err), "type": "server_error"}})
    yield sse("[DONE]")


@router.get("/models")
def models(server: Server) -> dict:
    names = [n for n, a in list(server.adapters.items()) if a.settings.shape in GENERATION_SHAPES]
    data = [{"id": n, "object": "model", "created": 0, "owned_by": "peftlab"} for n in ["base", *names]]
    return {"object": "list", "data": data if names else []}


@router.post("/completions")
async def completions(request: CompletionRequest, state: State):
    prompts = [request.prompt] if isinstance(request.prompt, str) else request.prompt
    return await respond(state, request, prepare(state, request, prompts, request.max_tokens), chat=False)


@router.post("/chat/completions")
async def chat_completions(request: ChatRequest, state: State):
    users = [m.content for m in request.messages if m.role == "user"]
    if not users:
        raise HTTPException(400, "messages: no message with role user")
    check_texts([m.content for m in request.messages], state.options)
    chat_prompt = _chat_prompt(state.server, request) if request.model == "base" else None
    max_tokens = request.max_completion_tokens or request.max_tokens
    prompts = _conversation(state, request) or users[-1:]
    return await respond(state, request, prepare(state, request, prompts, max_tokens, chat_prompt), chat=True)


def _conversation(state: ServeState, request: ChatRequest) -> list[dict] | None:
    """A chat-trained adapter (dataset.task=chat) answers the whole conversation, rendered by its encoder as in
    training; other adapters answer the last user message through their prompt template."""
    if request.model == "base":
        return None
    served, _ = target(state, request.model)
    if served.settings.shape != "chat":
        return None
    messages = open_for_answer([m.model_dump() for m in request.messages])
    return [{served.settings.dataset.messages_column: messages}]


def _chat_prompt(server: AdapterServer, request: ChatRequest) -> str | None:
    """The base continues the conversation through the tokenizer's chat template, when it has one."""
    if not getattr(server.tokenizer, "chat_template", None):
        return None
    messages = [m.model_dump() for m in request.messages]
    return server.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
