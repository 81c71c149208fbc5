"""HTTP serving: OpenAI-shaped answers, streaming, limits, the API key, adapters added and removed while serving."""

import json
import shutil
import threading

import pytest
from fastapi.testclient import TestClient
from serve_runs import SENTENCE, live_server, server_with

from peftlab.serve.__main__ import http_options, parse_args
from peftlab.serve.__main__ import main as serve_main
from peftlab.serve.app import create_app
from peftlab.serve.limits import ServeOptions
from peftlab.serve.registry import AdapterServer

QUESTION = "who wears number 3?"


@pytest.fixture(scope="module")
def server(serve_runs):
    return server_with(serve_runs, ("pos_a", "sql", "sql_b"))


@pytest.fixture(scope="module")
def client(server):
    with TestClient(create_app(server)) as client:
        yield client


def test_models_lists_the_generation_adapters_and_the_base(client):
    listed = client.get("/v1/models").json()
    assert listed["object"] == "list" and [m["id"] for m in listed["data"]] == ["base", "sql", "sql_b"]
    assert all(m["object"] == "model" for m in listed["data"])


def test_completions_and_chat_have_openai_shape_and_the_one_at_a_time_answers(client, server):
    body = client.post("/v1/completions", json={"model": "sql", "prompt": QUESTION, "temperature": 0}).json()
    assert body["object"] == "text_completion" and body["model"] == "sql" and body["id"].startswith("cmpl-")
    assert body["choices"][0]["text"] == server.predict("sql", QUESTION)["answer"]
    assert body["choices"][0]["finish_reason"] in ("stop", "length") and body["choices"][0]["index"] == 0
    usage = body["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] > 0
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": QUESTION}]
    chat = client.post("/v1/chat/completions", json={"model": "sql_b", "messages": messages}).json()
    assert chat["object"] == "chat.completion" and chat["id"].startswith("chatcmpl-")
    assert chat["choices"][0]["message"] == {
        "role": "assistant",
        "content": server.predict("sql_b", QUESTION)["answer"],
    }
    base = client.post("/v1/completions", json={"model": "base", "prompt": ["SELECT name", "who"], "max_tokens": 3})
    assert [c["index"] for c in base.json()["choices"]] == [0, 1] and base.json()["usage"]["completion_tokens"] <= 6
    wrong = client.post("/v1/completions", json={"model": "pos_a", "prompt": "x"})
    assert wrong.status_code == 400 and "use POST /predict" in wrong.json()["detail"]
    assert client.post("/v1/completions", json={"model": "nope", "prompt": "x"}).status_code == 404


def _events(response) -> list:
    lines = [line for line in response.text.split("\n\n") if line]
    assert lines[-1] == "data: [DONE]" and all(line.startswith("data: ") for line in lines)
    return [json.loads(line.removeprefix("data: ")) for line in lines[:-1]]


def test_streaming_gives_the_same_text_in_openai_chunks(client):
    ask = {"model": "sql", "prompt": QUESTION, "max_tokens": 6}
    whole = client.post("/v1/completions", json=ask).json()["choices"][0]
    streamed = client.post("/v1/completions", json={**ask, "stream": True})
    assert streamed.headers["content-type"].startswith("text/event-stream")
    chunks = _events(streamed)
    assert "".join(c["choices"][0]["text"] for c in chunks) == whole["text"]
    assert len(chunks) > 2 and chunks[-1]["choices"][0]["finish_reason"] == whole["finish_reason"]  # token by token
    chat = {"model": "sql", "messages": [{"role": "user", "content": QUESTION}], "max_tokens": 6, "stream": True}
    chunks = _events(client.post("/v1/chat/completions", json=chat))
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"} and chunks[0]["choices"][0]["delta"]["role"]
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == whole["text"]
    stop = whole["text"][len(whole["text"]) // 2 :][:3]  # cut in the middle: held back until certain
    cut = client.post("/v1/completions", json={**ask, "stop": [stop]}).json()["choices"][0]
    streamed = _events(client.post("/v1/completions", json={**ask, "stop": [stop], "stream": True}))
    assert (
        "".join(c["choices"][0]["text"] for c in streamed) == cut["text"] == whole["text"][: whole["text"].find(stop)]
    )


def test_the_openai_client_library_talks_to_the_server(server):
    """What a user of vLLM or LoRAX points at us: the `openai` package, over real HTTP on 127.0.0.1."""
    openai = pytest.importorskip("openai", reason="the openai client (dev extra)")
    expected = server.predict("sql", QUESTION)["answer"]
    with live_server(server) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=60)
        assert [m.id for m in client.models.list()] == ["base", "sql", "sql_b"]
        completion = client.completions.create(model="sql", prompt=QUESTION, temperature=0)
        assert completion.choices[0].text == expected and completion.usage.completion_tokens > 0
        messages = [{"role": "user", "content": QUESTION}]
        chat = client.chat.completions.create(model="sql", messages=messages)
        assert chat.choices[0].message.content == expected and chat.choices[0].message.role == "assistant"
        stream = client.chat.completions.create(model="sql", messages=messages, stream=True)
        assert "".join(chunk.choices[0].delta.content or "" for chunk in stream) == expected
        with pytest.raises(openai.NotFoundError):
            client.completions.create(model="nope", prompt="x")


def test_predict_streams_adapter_and_base_side_by_side(client, server):
    fields = {"question": QUESTION, "context": "table: t"}
    ask = {"adapter": "sql_b", "fields": fields, "compare_base": True, "stream": True}
    events = _events(client.post("/predict", json=ask))
    for side, base in (("adapter", False), ("base", True)):
        pieces = [e["text"] for e in events if e["side"] == side and "text" in e]
        final = [e["answer"] for e in events if e["side"] == side and "answer" in e]
        assert "".join(pieces) == final[0] == server.predict("sql_b", fields=fields, base=base)["answer"]
    refused = client.post("/predict", json={"adapter": "pos_a", "text": "x", "stream": True})
    assert refused.status_code == 400 and "generation adapter" in refused.json()["detail"]


def test_predict_takes_a_batch_of_texts_and_metrics_count_it(client, server):
    texts = [SENTENCE, "dull and long"]
    answers = client.post("/predict", json={"adapter": "pos_a", "texts": texts}).json()["answers"]
    assert [a["answer"] for a in answers] == [server.predict("pos_a", t)["answer"] for t in texts]
    metrics = client.get("/metrics").json()
    assert metrics["adapters"]["pos_a"]["requests"] >= 1 and metrics["batches"] >= 1
    assert set(metrics["adapters"]["pos_a"]["latency_ms"]) == {"p50", "p90", "p99"}
    assert client.get("/health").json()["status"] == "ok"


def test_each_limit_answers_with_its_4xx_and_says_why(server):
    options = ServeOptions(max_chars=40, max_texts=2, max_body_bytes=600, max_tokens=4)
    with TestClient(create_app(server, options)) as client:
        too_long = client.post("/predict", json={"adapter": "pos_a", "text": "x" * 41})
        assert too_long.status_code == 413 and "at most 40" in too_long.json()["detail"]
        too_many = client.post("/predict", json={"adapter": "pos_a", "texts": ["a", "b", "c"]})
        assert too_many.status_code == 413 and "at most 2" in too_many.json()["detail"]
        too_big = client.post("/predict", json={"adapter": "pos_a", "text": "x" * 700})
        assert too_big.status_code == 413 and "at most 600" in too_big.json()["detail"]
        tokens = client.post("/v1/completions", json={"model": "sql", "prompt": "x", "max_tokens": 5})
        assert tokens.status_code == 400 and "1 to 4" in tokens.json()["detail"]
    slow = ServeOptions(max_wait_ms=2000, max_batch=64, timeout_s=0.2)  # the batch waits longer than a request may
    with TestClient(create_app(server, slow)) as client:
        late = client.post("/predict", json={"adapter": "pos_a", "text": "x"})
        assert late.status_code == 504 and "within 0.2 s" in late.json()["detail"]


def test_api_key_is_checked_on_every_request_and_required_off_loopback(server, capsys, monkeypatch):
    with TestClient(create_app(server, ServeOptions(api_key="s3cret"))) as client:
        assert client.get("/adapters").status_code == 401
        assert client.get("/v1/models", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.get("/v1/models", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert client.get("/").status_code == 200  # the static page; what it fetches is checked
    with pytest.raises(SystemExit) as exit_:
        serve_main(["http", "--host", "0.0.0.0", "--adapter", "a=unused"])
    assert exit_.value.code == 2 and capsys.readouterr().err.strip().endswith("needs --api-key or PEFTLAB_API_KEY")
    with pytest.raises(SystemExit):
        serve_main(["http", "--max-batch", "0", "--adapter", "a=unused"])
    assert capsys.readouterr().err.strip() == "error: --max-batch 0: must be 1 or more"
    monkeypatch.setenv("PEFTLAB_API_KEY", "from-env")
    assert http_options(parse_args(["http", "--host", "0.0.0.0", "--adapter", "a=x"])).api_key == "from-env"


def test_adapters_added_and_removed_while_requests_run(serve_runs, tmp_path):
    server = AdapterServer()
    server.add_adapter("pos_a", serve_runs / "pos_a")
    expected = server.predict("pos_a", SENTENCE)
    pickled = tmp_path / "pickled"
    shutil.copytree(serve_runs / "pos_b", pickled)
    (pickled / "adapter" / "adapter_model.bin").write_bytes(b"")
    with TestClient(create_app(server, ServeOptions(adapter_roots=(serve_runs, tmp_path)))) as client:
        answers, stop = [], threading.Event()

        def keep_asking():
            while not stop.is_set():
                answers.append(client.post("/predict", json={"adapter": "pos_a", "text": SENTENCE}))

        thread = threading.Thread(target=keep_asking)
        thread.start()
        for name in ("pos_b", "pos_ia3"):  # pos_b joins pos_a's model; IA3 gets a model of its own
            assert client.post("/adapters", json={"name": name, "path": name}).status_code == 201
            answer = client.post("/predict", json={"adapter": name, "text": SENTENCE}).json()
            assert answer["answer"] == server.predict(name, SENTENCE)["answer"]
        for name in ("pos_b", "pos_ia3"):
            assert client.delete(f"/adapters/{name}").json() == {"removed": name}
            assert "not loaded" in client.post("/predict", json={"adapter": name, "text": "x"}).json()["detail"]
        stop.set()
        thread.join()
        assert answers and all(r.status_code == 200 for r in answers)
        assert all(r.json()["scores"] == pytest.approx(expected["scores"], abs=1e-5) for r in answers)
        assert client.post("/adapters", json={"name": "x", "path": "/"}).status_code == 403  # outside the roots
        refused = client.post("/adapters", json={"name": "x", "path": str(pickled)})
        assert refused.status_code == 400 and "pickle" in refused.json()["detail"]
        assert client.delete("/adapters/nope").status_code == 404
    assert server.backbone_loads == 1 and len(server.groups) == 1
    with TestClient(create_app(server)) as client:  # no --adapter-root: adding is off
        assert "--adapter-root" in client.post("/adapters", json={"name": "x", "path": "pos_b"}).json()["detail"]
