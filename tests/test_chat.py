"""Chat data (dataset.task=chat, data/conversations.py): conversations rendered with SmolLM2's real ChatML template,
checked token by token for which tokens carry loss; ShareGPT turns, the last-turn option, truncation, refusals, a
fit on the tiny twin, and /v1/chat/completions answering the whole conversation through the same encoder."""

import pytest
from conftest import compose_config

from peftlab.config import validate
from peftlab.data.by_shape import COLLATORS, ENCODERS
from peftlab.data.conversations import ChatRows
from peftlab.data.encoders import IGNORE_INDEX
from peftlab.errors import ConfigError, DataError
from peftlab.models.loading import load_tokenizer
from peftlab.run import fit

TALK = [
    {"role": "user", "content": "Hi there"},
    {"role": "assistant", "content": "Hello! How can I help?"},
    {"role": "user", "content": "What is 2+2?"},
    {"role": "assistant", "content": "4"},
]
SHAREGPT = [{"from": "human", "value": "Hi there"}, {"from": "gpt", "value": "Hello! How can I help?"},
            {"from": "human", "value": "What is 2+2?"}, {"from": "gpt", "value": "4"}]  # fmt: skip


@pytest.fixture(scope="module")
def chat(tmp_path_factory):
    """The real SmolLM2 tokenizer (the twin's) and the settings of dataset=chat."""
    out = tmp_path_factory.mktemp("chat")
    settings = validate(compose_config(["model=smollm2_tiny", "dataset=chat"], output_dir=out), check_files=False)
    return load_tokenizer(settings.model), settings


def _encode(tokenizer, settings, conversations, **changes) -> dict:
    dataset = settings.dataset.__class__(**{**vars(settings.dataset), **changes})
    return ChatRows(tokenizer, dataset)({dataset.messages_column: conversations})


def _learnt_pieces(tokenizer, ids, labels) -> list[str]:
    """The runs of consecutive labelled tokens, decoded with special tokens kept."""
    pieces, run = [], []
    for token, label in zip(ids, labels, strict=True):
        if label == IGNORE_INDEX:
            if run:
                pieces.append(tokenizer.decode(run))
            run = []
        else:
            assert label == token  # a labelled token is learnt as itself (the model shifts)
            run.append(token)
    return pieces + ([tokenizer.decode(run)] if run else [])


def test_every_assistant_answer_and_its_end_of_turn_carry_loss_and_nothing_else(chat):
    tokenizer, settings = chat
    encoded = _encode(tokenizer, settings, [TALK])
    ids, labels = encoded["input_ids"][0], encoded["labels"][0]
    assert ids == tokenizer.apply_chat_template(TALK, tokenize=True, return_dict=True)["input_ids"]
    assert _learnt_pieces(tokenizer, ids, labels) == ["Hello! How can I help?<|im_end|>", "4<|im_end|>"]
    # token by token: system prompt (the template's default), user turns, role headers and newlines carry no loss
    for token, label in zip(tokenizer.convert_ids_to_tokens(ids), labels, strict=True):
        if token in ("<|im_start|>", "user", "system", "assistant", "Ċ"):
            assert label == IGNORE_INDEX, token
    # generation continues from the last answer's prompt: everything up to "<|im_start|>assistant\n"
    prompt = tokenizer.decode(ids[: encoded["prompt_length"][0]])
    assert prompt == tokenizer.apply_chat_template(TALK[:3], tokenize=False, add_generation_prompt=True)
    assert tokenizer.eos_token == "<|im_end|>"  # the labelled end of turn is where generation stops


def test_last_turn_only_sharegpt_turns_and_a_given_system_prompt(chat):
    tokenizer, settings = chat
    last = _encode(tokenizer, settings, [TALK], assistant_turns="last")
    assert _learnt_pieces(tokenizer, last["input_ids"][0], last["labels"][0]) == ["4<|im_end|>"]
    shared = _encode(tokenizer, settings, [SHAREGPT], messages_column="conversations")
    assert shared == _encode(tokenizer, settings, [TALK])  # ShareGPT's from/value map to the same roles
    system = _encode(tokenizer, settings, [[{"role": "system", "content": "Be brief."}, *TALK]])
    text = tokenizer.decode(system["input_ids"][0])
    assert "Be brief." in text and "SmolLM" not in text  # a given system turn replaces the template's default
    trailing = _encode(tokenizer, settings, [[*TALK, {"role": "user", "content": "thanks"}]])
    assert trailing == _encode(tokenizer, settings, [TALK])  # turns after the last answer teach nothing: dropped


def test_long_conversations_keep_the_turns_nearest_the_last_answer(chat):
    tokenizer, settings = chat
    long = [{"role": "user", "content": "word " * 300}, *TALK]
    full = _encode(tokenizer, settings, [long], max_length=100000)
    cut = _encode(tokenizer, settings, [long], max_length=64)
    ids, length = cut["input_ids"][0], cut["prompt_length"][0]
    assert len(ids) <= 64 + 1  # the answer's trailing newline rides along (no loss)
    assert ids == full["input_ids"][0][-len(ids) :] and cut["labels"][0] == full["labels"][0][-len(ids) :]
    assert _learnt_pieces(tokenizer, ids, cut["labels"][0])[-1] == "4<|im_end|>"
    assert tokenizer.decode(ids[:length]).endswith("<|im_start|>assistant\n")


def test_a_text_request_is_one_user_turn_opened_for_the_answer(chat):
    tokenizer, settings = chat
    encoded = _encode(tokenizer, settings, ["What is 2+2?"])
    prompt = tokenizer.decode(encoded["input_ids"][0][: encoded["prompt_length"][0]])
    assert prompt == tokenizer.apply_chat_template(TALK[2:3], tokenize=False, add_generation_prompt=True)
    batch = COLLATORS["chat"](tokenizer)([{k: v[0] for k, v in encoded.items()}])
    assert tokenizer.decode(batch["prompt_input_ids"][0]) == prompt


def test_bad_conversations_and_models_are_refused_in_one_line(chat, tmp_path):
    tokenizer, settings = chat
    with pytest.raises(DataError, match=r"dataset=chat: messages has a turn of role 'tool'; allowed: system, user"):
        _encode(tokenizer, settings, [[{"role": "tool", "content": "x"}, *TALK]])
    with pytest.raises(DataError, match="a conversation in messages has no assistant turn"):
        _encode(tokenizer, settings, [TALK[:1]])
    with pytest.raises(ConfigError, match=r"dataset=chat \(chat\) with model=minilm \(encoder\): not possible"):
        validate(compose_config(["dataset=chat", "model=minilm"], output_dir=tmp_path), check_files=False)
    with pytest.raises(ConfigError, match=r"assistant_turns='first': .*all, last"):
        validate(compose_config(["dataset=chat", "dataset.assistant_turns=first"], output_dir=tmp_path))
    unstable = load_tokenizer(settings.model)
    unstable.chat_template = "{{ messages[-1]['content'] }}"  # renders the last turn only: not prefix-stable
    with pytest.raises(ConfigError, match="renders earlier turns differently once later ones follow"):
        ENCODERS["chat"](unstable, settings.dataset)({"messages": [TALK]})


CHATS = [
    {"messages": [{"role": "user", "content": f"say {w}"}, {"role": "assistant", "content": f"{w} {w}"}]}
    for w in ("red", "blue", "green", "gold")
]


def test_a_chat_run_learns_the_answers_and_is_served_on_the_whole_conversation(tmp_path, write_jsonl):
    from fastapi.testclient import TestClient

    from peftlab.serve.app import create_app
    from peftlab.serve.registry import AdapterServer

    data = write_jsonl(CHATS * 4, CHATS)
    run = ["model=smollm2_tiny", "dataset=chat", f"dataset.data_dir={data}", "dataset.batch_size=4",
           "dataset.max_eval_generate_rows=2", "trainer.max_steps=12", "trainer.val_check_interval=4",
           "dataset.group_by_length=false", "peft.lr=1e-2"]  # fmt: skip
    result = fit(compose_config(run, output_dir=tmp_path / "run"))
    history = result.report["history"]
    assert history[-1]["val/loss"] < history[0]["val/loss"] and "val/rougeL" in history[-1]
    server = AdapterServer()
    server.add_adapter("talk", tmp_path / "run")
    with TestClient(create_app(server)) as client:
        body = {"model": "talk", "messages": CHATS[0]["messages"][:1], "max_tokens": 4, "temperature": 0}
        reply = client.post("/v1/chat/completions", json=body)
        assert reply.status_code == 200, reply.text
        answer = reply.json()["choices"][0]["message"]["content"]
        predicted = client.post("/predict", json={"adapter": "talk", "text": "say red"}).json()
        # one encoder: a typed text is the same single user turn (greedy, so 4 tokens are a prefix of 128)
        assert answer and predicted["answer"].startswith(answer)
        # the whole conversation is the prompt, not its last user message: ChatML counts every turn
        longer = {**body, "messages": [*CHATS[1]["messages"], *CHATS[0]["messages"][:1]]}
        usage = client.post("/v1/chat/completions", json=longer).json()["usage"]
        expected = server.tokenizer.apply_chat_template(
            longer["messages"], add_generation_prompt=True, return_dict=True
        )
        assert usage["prompt_tokens"] == len(expected["input_ids"]) > reply.json()["usage"]["prompt_tokens"]
