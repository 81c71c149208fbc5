"""Serving: one base, many adapters — routing, bit-exact switching, one base load, other-base error, HTTP + page."""

import json
import shutil

import pytest
import torch
import transformers
from serve_runs import SENTENCE, live_server, server_with

from peftlab.errors import ConfigError
from peftlab.serve.__main__ import main as serve_main
from peftlab.serve.registry import AdapterServer


@pytest.fixture(scope="module")
def runs(serve_runs):
    """Two classifiers and one text-to-SQL adapter on GPT-2's twin, and one classifier on another base."""
    return serve_runs


@pytest.fixture(scope="module")
def server(runs):
    return server_with(runs, ("pos_a", "pos_b", "sql"))


def test_two_adapters_differ_and_switching_back_is_bit_exact(server):
    first = server.predict("pos_a", SENTENCE)
    other = server.predict("pos_b", SENTENCE)
    again = server.predict("pos_a", SENTENCE)
    assert first["scores"] != other["scores"]
    assert again == first  # the same floats, not merely close


def test_base_is_read_once_and_shared_by_every_task_head(runs, monkeypatch):
    reads = []
    for auto in ("AutoModel", "AutoModelForSequenceClassification", "AutoModelForCausalLM"):
        original = getattr(transformers, auto).from_pretrained
        monkeypatch.setattr(
            getattr(transformers, auto), "from_pretrained", lambda *a, _o=original, **k: reads.append(a) or _o(*a, **k)
        )
    server = AdapterServer()
    for name in ("pos_a", "pos_b", "sql"):
        server.add_adapter(name, runs / name)
    assert len(reads) == 1 and server.backbone_loads == 1
    assert {group[0] for group in server.groups} == {"classify", "causal"}  # two heads around one body
    body = server.backbone.h[0].attn.c_attn.weight
    for model in server.groups.values():
        inner = model.get_base_model().transformer.h[0].attn.c_attn.base_layer.weight
        assert inner.data_ptr() == body.data_ptr()  # same memory, not a copy
    assert isinstance(server.predict("sql", "who wears number 3?")["answer"], str)


def test_request_missing_a_needed_field_is_a_named_error(server):
    answer = server.predict("sql", fields={"question": "who wears number 3?"})  # context left blank: allowed
    assert isinstance(answer["answer"], str)
    with pytest.raises(ConfigError, match=r"demo \(classification\) requests need the fields \['sentence'\]"):
        server.predict("pos_a", fields={"text": "wrong column"})


def test_base_answer_is_the_model_without_adapter(server, runs):
    with_adapter = server.predict("pos_a", SENTENCE)
    base = server.predict("pos_a", SENTENCE, base=True)
    assert base["scores"] != with_adapter["scores"]


def test_adapter_of_another_base_is_refused_naming_both(server, runs):
    with pytest.raises(ConfigError, match=r"trained on base model bloom_tiny .* this server's base is gpt2_tiny"):
        server.add_adapter("other", runs / "other")


def test_a_failure_that_is_not_another_base_keeps_its_own_error(runs, monkeypatch):
    """Out of memory while loading is a RuntimeError too; it must not read "trained on another base"."""
    import peft

    def out_of_memory(*args, **kwargs):
        raise RuntimeError("CUDA out of memory. Tried to allocate 20.00 MiB")

    monkeypatch.setattr(peft.PeftModel, "from_pretrained", out_of_memory)
    with pytest.raises(RuntimeError, match="CUDA out of memory") as info:
        AdapterServer().add_adapter("a", runs / "pos_a")
    assert not isinstance(info.value, ConfigError)


def test_cli_predict_prints_every_adapter(runs, capsys):
    code = serve_main(
        ["predict", "--adapter", f"a={runs / 'pos_a'}", "--adapter", f"q={runs / 'sql'}", "--json", SENTENCE]
    )
    rows = json.loads(capsys.readouterr().out)
    assert code == 0 and [r["adapter"] for r in rows] == ["a", "q"]
    assert rows[0]["answer"] in ("negative", "positive") and "base" in rows[0]


def test_cli_reports_other_base_in_one_line(runs, capsys):
    with pytest.raises(SystemExit) as exit_:
        serve_main(["predict", "--adapter", f"a={runs / 'pos_a'}", "--adapter", f"b={runs / 'other'}", "x"])
    last_line = capsys.readouterr().err.strip().splitlines()[-1]
    assert exit_.value.code == 2 and last_line.startswith("error: adapter b ") and "bloom_tiny" in last_line


def test_http_json_api(server):
    from fastapi.testclient import TestClient

    from peftlab.serve.app import create_app

    client = TestClient(create_app(server))
    listed = client.get("/adapters").json()
    assert [a["name"] for a in listed["adapters"]] == ["pos_a", "pos_b", "sql"]
    answer = client.post("/predict", json={"adapter": "pos_b", "text": SENTENCE, "compare_base": True}).json()
    assert answer["scores"] == pytest.approx(server.predict("pos_b", SENTENCE)["scores"], abs=1e-5)
    base = server.predict("pos_b", SENTENCE, base=True)
    assert answer["base"]["scores"] == pytest.approx(base["scores"], abs=1e-5)
    assert client.post("/predict", json={"adapter": "pos_b", "text": SENTENCE}).json()["base"] is None  # not asked
    bad = client.post("/predict", json={"adapter": "nope", "text": "x"})
    assert bad.status_code == 400 and "not loaded" in bad.json()["detail"]


def test_page_in_headless_chromium_lists_adapters_and_answers_a_click(server):
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (.ci/run installs it with apt-get)")
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright not installed")
    flags = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]
    with live_server(server) as url, playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=flags)
        page = browser.new_page()
        page.goto(f"{url}/")
        page.wait_for_selector("#adapters tbody tr")
        assert page.locator("#adapters tbody tr").count() == 3
        assert "gpt2_tiny" in page.text_content("#base")
        done = "document.getElementById('status').textContent === 'done'"
        page.check("input[value=pos_b]")
        page.fill("#inputs textarea[data-column=sentence]", SENTENCE)
        page.click("#ask")
        page.wait_for_function(done, timeout=30_000)
        expected = server.predict("pos_b", SENTENCE)["answer"]
        assert page.text_content("#adapter-answer").startswith(expected)
        assert page.text_content("#base-answer").strip() and page.text_content("#chosen") == "pos_b"
        page.check("input[value=sql]")  # text-to-SQL: one box per input column of its prompt
        boxes = page.locator("#inputs textarea")
        assert [boxes.nth(i).get_attribute("data-column") for i in range(boxes.count())] == ["context", "question"]
        sql = {"question": "who wears number 3?", "context": "table: t\ncolumns: name, number"}
        for column, text in sql.items():
            page.fill(f"#inputs textarea[data-column={column}]", text)
        page.evaluate("document.getElementById('status').textContent = ''")
        page.click("#ask")
        page.wait_for_function(done, timeout=30_000)
        assert page.text_content("#adapter-answer") == server.predict("sql", fields=sql)["answer"]  # streamed
        assert page.text_content("#base-answer") == server.predict("sql", fields=sql, base=True)["answer"]
        assert page.text_content("#chosen") == "sql"
        browser.close()
    assert torch.is_grad_enabled()  # serving's no_grad blocks did not leak into the process
