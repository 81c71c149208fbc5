"""Micro-batching: one forward for requests naming different adapters gives the one-at-a-time answers."""

import random
import threading

import pytest
from serve_runs import SENTENCE, SQL_CONTEXT

from peftlab.serve.inference import BASE, Job, run_jobs
from peftlab.serve.metrics import ServeMetrics
from peftlab.serve.microbatch import MicroBatcher
from peftlab.serve.registry import AdapterServer

TEXTS = [SENTENCE, "dull", "the worst film of the year: flat, long and badly acted from start to end", "fine"]
QUESTIONS = ["who wears number 3?", "who wears number 12 in the team that won the cup last year?", "who?"]
CLASSIFIERS = ("pos_a", "pos_b", "pos_ia3")


@pytest.fixture(scope="module")
def server(serve_runs):
    server = AdapterServer()
    for name in (*CLASSIFIERS, "sql", "sql_b", "sql_prefix"):
        server.add_adapter(name, serve_runs / name)
    return server


def make_job(server, name, text=None, fields=None, base=False) -> Job:
    served = server.served(name)
    return Job(served, BASE if base else name, server.features(served, text, fields))


def assert_same(batched: dict, sequential: dict) -> None:
    assert batched["answer"] == sequential["answer"]
    if "scores" in sequential:
        assert batched["scores"] == pytest.approx(sequential["scores"], abs=1e-5)


def count_calls(monkeypatch, model, method: str) -> list:
    calls, original = [], getattr(model, method)
    monkeypatch.setattr(
        model, method, lambda *a, **k: calls.append(len(k.get("adapter_names") or [])) or original(*a, **k)
    )
    return calls


def test_mixed_classification_batch_equals_one_at_a_time(server, monkeypatch):
    plan = [(name, text, base) for text in TEXTS for name in CLASSIFIERS for base in (False, True)]
    lora, ia3 = (server.groups[server.served(name).group] for name in ("pos_a", "pos_ia3"))
    assert lora is server.groups[server.served("pos_b").group] and server.served("pos_a").mixable
    assert not server.served("pos_ia3").mixable  # IA3 cannot mix: its own sub-batches
    lora_calls, ia3_calls = count_calls(monkeypatch, lora, "forward"), count_calls(monkeypatch, ia3, "forward")
    results = run_jobs(server, [make_job(server, n, t, base=b) for n, t, b in plan])
    assert lora_calls == [16]  # pos_a, pos_b and the base, 4 texts each: one forward
    assert len(ia3_calls) == 2  # the IA3 adapter's rows, then the base's
    monkeypatch.undo()
    for (name, text, base), result in zip(plan, results, strict=True):
        assert_same(result, server.predict(name, text, base=base))


def test_mixed_generation_batch_equals_one_at_a_time(server, monkeypatch):
    plan = [
        (n, {"question": q, "context": SQL_CONTEXT}, False) for q in QUESTIONS for n in ("sql", "sql_b", "sql_prefix")
    ]
    plan += [(n, {"question": q}, True) for q in QUESTIONS for n in ("sql", "sql_prefix")]  # the base, no context
    lora, prefix = (server.groups[server.served(name).group] for name in ("sql", "sql_prefix"))
    lora_calls, prefix_calls = count_calls(monkeypatch, lora, "generate"), count_calls(monkeypatch, prefix, "generate")
    results = run_jobs(server, [make_job(server, name, fields=fields, base=base) for name, fields, base in plan])
    assert lora_calls == [9]  # two adapters and the base, prompts of three lengths: one generate
    assert len(prefix_calls) == 4  # prefix tuning: one call per prompt length (no padding), one for the base
    monkeypatch.undo()
    answers = {server.predict(name, fields=fields, base=base)["answer"] for name, fields, base in plan}
    assert len(answers) > 2  # the adapters and the base do answer differently
    for (name, fields, base), result in zip(plan, results, strict=True):
        assert_same(result, server.predict(name, fields=fields, base=base))
        assert result["finish_reason"] in ("stop", "length")


def test_each_row_keeps_its_own_max_new_tokens_and_stop(server):
    fields = {"question": QUESTIONS[0], "context": SQL_CONTEXT}
    short = make_job(server, "sql", fields=fields)
    short.generation = {**short.generate_kwargs(), "max_new_tokens": 2}
    stopped = make_job(server, "sql_b", fields=fields)
    full = run_jobs(server, [stopped])[0]["answer"]
    stopped.stop = (full.split()[1],)
    long_ = make_job(server, "sql_b", fields=fields)
    results = run_jobs(server, [short, stopped, long_])
    assert results[0]["finish_reason"] == "length" and results[0]["usage"][1] == 2
    assert results[1]["answer"] == full[: full.index(full.split()[1])] and results[1]["finish_reason"] == "stop"
    assert results[2]["answer"] == full == server.predict("sql_b", fields=fields)["answer"]


def test_many_threads_with_random_adapters_get_the_sequential_answers(server):
    rng = random.Random(0)
    names = [*CLASSIFIERS, "sql", "sql_b", "sql_prefix"]
    asks = [(rng.choice(names), rng.choice(TEXTS + QUESTIONS), rng.random() < 0.2) for _ in range(48)]
    expected = [server.predict(name, text, base=base) for name, text, base in asks]
    metrics = ServeMetrics()
    batcher = MicroBatcher(server, max_batch=16, max_wait_ms=20, metrics=metrics)
    got: dict[int, dict] = {}

    def client(indices):
        for i in indices:
            name, text, base = asks[i]
            got[i] = batcher.submit([make_job(server, name, text, base=base)])[0].result(timeout=60)

    threads = [threading.Thread(target=client, args=(range(k, len(asks), 12),)) for k in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    batcher.close()
    for i, want in enumerate(expected):
        assert_same(got[i], want)
    snapshot = metrics.snapshot()
    assert snapshot["mean_batch_size"] > 1.5  # requests did share forwards
