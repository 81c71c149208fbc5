"""The one inference path: rows of many requests (and adapters) padded together, one forward or generate() per head.

A request becomes Jobs (one encoded row each, naming its adapter or BASE); run_jobs pads the rows of one task head
with the collator training used and runs them with peft's mixed-adapter batches, or one sub-batch per adapter where
they cannot mix. A single request is a batch of one (AdapterServer.predict), so there is one way to an answer;
tests/test_serve_batching.py holds a mixed batch to each row asked alone (scores within 1e-5, the same greedy text).
"""

import json
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from peftlab.config.tasks import CAUSAL_SHAPES, LABELLED_SHAPES
from peftlab.errors import ConfigError
from peftlab.serve.streaming import RowStreamer

if TYPE_CHECKING:  # registry.py imports this module: AdapterServer.predict is a batch of one
    from peftlab.serve.registry import AdapterServer, ServedAdapter

BASE = "__base__"  # peft's name for "no adapter" in adapter_names (its LoRA layers run the base layer alone)


@dataclass
class Job:
    served: "ServedAdapter"  # whose task head, collator and labels the row uses
    adapter: str  # served.name, or BASE: the same head with adapters off
    features: dict  # one encoded, unpadded row
    generation: dict | None = None  # generate() arguments; None: the adapter's dataset.generation
    stop: tuple[str, ...] = field(default_factory=tuple)  # cut the text before the first of these
    listener: Callable[[int], None] | None = None  # gets each new token as it is generated (stream: true)

    def generate_kwargs(self) -> dict:
        return dict(self.served.settings.dataset.generation) if self.generation is None else dict(self.generation)


def public(answer: dict) -> dict:
    """What a client is shown of a row's answer: the text or label, and a classifier's scores."""
    return {k: v for k, v in answer.items() if k in ("answer", "scores")}


def _part_key(job: Job) -> tuple:
    """Jobs that may share one call: one head, and (generation) the same decoding settings but max_new_tokens."""
    if job.served.settings.shape in LABELLED_SHAPES:
        return (job.served.group, None)
    settings = {k: v for k, v in job.generate_kwargs().items() if k != "max_new_tokens"}
    return (job.served.group, json.dumps(settings, sort_keys=True, default=str))


def _unpadded_length(job: Job) -> tuple:
    ids = job.features["input_ids"]
    if ids and isinstance(ids[0], list):  # multiple choice: one row per choice
        return tuple(map(len, ids))
    return (job.features.get("prompt_length", len(ids)),)  # causal generation pads the prompt alone


def _sub_batches(jobs: list[Job], indices: list[int]) -> list[list[int]]:
    """All mixable rows together (one forward); the others one batch per adapter (set_adapter each time), and for
    prompt learning one per adapter and length (no padding: virtual tokens before padding change the answers)."""
    mixed = [i for i in indices if jobs[i].served.mixable]
    alone: dict[tuple, list[int]] = defaultdict(list)
    for i in indices:
        job = jobs[i]
        if not job.served.mixable:
            exact = job.served.pads_exactly or job.adapter == BASE
            alone[(job.adapter, None if exact else _unpadded_length(job))].append(i)
    return ([mixed] if mixed else []) + list(alone.values())


def run_jobs(server: "AdapterServer", jobs: list[Job]) -> list[dict | Exception]:
    """Each job's answer, or the error that belongs to it (an adapter removed while it waited, say)."""
    results: list[dict | Exception | None] = [None] * len(jobs)
    parts: dict[tuple, list[int]] = defaultdict(list)
    for i, job in enumerate(jobs):
        parts[_part_key(job)].append(i)
    with server.lock:
        for indices in parts.values():
            live = []
            for i in indices:
                if server.adapters.get(jobs[i].served.name) is not jobs[i].served:
                    results[i] = ConfigError(f"adapter {jobs[i].served.name!r}: removed while the request waited")
                else:
                    live.append(i)
            for sub in _sub_batches(jobs, live):
                try:
                    answers = _run(server, [jobs[i] for i in sub])
                except Exception as err:  # it belongs to these requests, not to the worker
                    answers = [err] * len(sub)
                for i, answer in zip(sub, answers, strict=True):
                    results[i] = answer
    return results


@torch.no_grad()
def _run(server: "AdapterServer", jobs: list[Job]) -> list[dict]:
    first = jobs[0].served
    model = server.groups[first.group]
    with server.tokenizer_lock:  # the training collator: same padding, same side
        batch = server.on_device(first.collate([job.features for job in jobs]))
    names = [job.adapter for job in jobs]
    if first.mixable:
        return _answer(server, model, jobs, batch, {"adapter_names": names})
    model.set_adapter(first.name)
    if names[0] == BASE:
        with model.disable_adapter():
            return _answer(server, model, jobs, batch, {})
    return _answer(server, model, jobs, batch, {})


def _answer(server: "AdapterServer", model, jobs: list[Job], batch: dict, mix: dict) -> list[dict]:
    if jobs[0].served.settings.shape in LABELLED_SHAPES:
        inputs = {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
        probs = model(**inputs, **mix).logits.softmax(-1)
        answers = []
        for job, row in zip(jobs, probs, strict=True):
            labels = list(job.served.settings.dataset.labels)
            scores = dict(zip(labels, map(float, row), strict=True))
            answers.append({"answer": labels[int(row.argmax())], "scores": scores})
        return answers
    return _generate(server, model, jobs, batch, mix)


def _generate(server: "AdapterServer", model, jobs: list[Job], batch: dict, mix: dict) -> list[dict]:
    """One generate() for the rows; each row is cut back to its own max_new_tokens (greedy: a prefix is the same)."""
    causal = jobs[0].served.settings.shape in CAUSAL_SHAPES
    prefix = "prompt_" if causal else ""
    input_ids, attention_mask = batch[f"{prefix}input_ids"], batch[f"{prefix}attention_mask"]
    kwargs = [job.generate_kwargs() for job in jobs]
    common = dict(kwargs[0])
    limits = [k.get("max_new_tokens") for k in kwargs]
    if None not in limits:
        common["max_new_tokens"] = max(limits)
    if any(job.listener for job in jobs) and common.get("num_beams", 1) == 1:  # beams have no stream to follow
        common["streamer"] = RowStreamer([job.listener for job in jobs])
    out = model.generate(input_ids=input_ids, attention_mask=attention_mask, **common, **mix)
    new = out[:, input_ids.shape[1] :] if causal else out[:, 1:]  # seq2seq output opens with the decoder start
    eos, rows = server.tokenizer.eos_token_id, [row[:limit] for row, limit in zip(new.tolist(), limits, strict=True)]
    with server.tokenizer_lock:
        texts = server.tokenizer.batch_decode(rows, skip_special_tokens=True)
    answers = []
    for job, tokens, text in zip(jobs, rows, texts, strict=True):
        ended = eos in tokens
        used = tokens.index(eos) if ended else len(tokens)
        text = text.strip()
        cuts = [text.find(s) for s in job.stop if s and s in text]
        if cuts:
            text, ended = text[: min(cuts)], True
        prompt = job.features.get("prompt_length", len(job.features["input_ids"]))  # usage counts
        answers.append({"answer": text, "finish_reason": "stop" if ended else "length", "usage": (prompt, used)})
    return answers


def raw_prompt_features(server: "AdapterServer", served: "ServedAdapter", prompt: str) -> dict:
    """A prompt the model continues as it is (OpenAI completions on the base), shaped like the encoder's rows."""
    tokenizer, max_length = server.tokenizer, served.settings.dataset.max_length
    with server.tokenizer_lock:
        return _raw_features(tokenizer, served.settings.shape, prompt, max_length)


def _raw_features(tokenizer, shape: str, prompt: str, max_length: int) -> dict:
    if shape in CAUSAL_SHAPES:
        start = [tokenizer.bos_token_id] if getattr(tokenizer, "add_bos_token", False) else []
        ids = [*start, *tokenizer(prompt, add_special_tokens=False)["input_ids"]][-max_length:]
        return {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": [], "prompt_length": len(ids)}
    encoded = tokenizer(prompt, truncation=True, max_length=max_length)
    return {**encoded, "labels": [tokenizer.eos_token_id]}
