"""Chat rows (dataset.task=chat): OpenAI `messages` or ShareGPT `conversations` -> ids, with loss on assistant turns.

The conversation is rendered with the model's own chat template, tokenised once, and each token carries a label only
where it lies inside an assistant turn's answer (its content and the template's end-of-turn token, which is what
generation stops on). Where an assistant turn starts is found by rendering the conversation up to it with
`add_generation_prompt=True`; that only works for templates whose rendering of a conversation begins with the
rendering of every shorter one (ChatML, Llama 3, Mistral ...). transformers' `return_assistant_tokens_mask` would do
the same for templates with `{% generation %}` markers only, which SmolLM2's (and most) lack, hence this module.
"""

from dataclasses import dataclass

from peftlab.config.dataset_schema import DatasetSettings
from peftlab.data.encoders import IGNORE_INDEX, Encoder
from peftlab.errors import ConfigError, DataError

ROLES = ("system", "user", "assistant")
# ShareGPT speaker names -> OpenAI roles (FastChat's and axolotl's convention).
SHAREGPT_ROLES = {"system": "system", "human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant"}


def as_messages(conversation, settings: DatasetSettings) -> list[dict]:
    """A row's conversation as [{"role", "content"}]: OpenAI messages as they are, ShareGPT {from, value} turns
    mapped, a plain string as one user turn to answer (a request typed as text on the serve page or CLI)."""
    if isinstance(conversation, str):
        return open_for_answer([{"role": "user", "content": conversation}])
    messages = []
    for turn in conversation:
        if "role" in turn:
            role, content = turn["role"], turn.get("content")
        else:
            role, content = SHAREGPT_ROLES.get(turn.get("from"), turn.get("from")), turn.get("value")
        if role not in ROLES:
            raise DataError(
                f"dataset={settings.name}: {settings.messages_column} has a turn of role {role!r}; "
                f"allowed: {', '.join(ROLES)} (or ShareGPT's {', '.join(SHAREGPT_ROLES)})"
            )
        messages.append({"role": role, "content": str(content or "")})
    return messages


def up_to_last_answer(messages: list[dict], settings: DatasetSettings) -> list[dict]:
    """Turns after the last assistant turn have no answer to learn from, so they are left out."""
    last = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=None)
    if last is None:
        raise DataError(f"dataset={settings.name}: a conversation in {settings.messages_column} has no assistant turn")
    return messages[: last + 1]


def open_for_answer(conversation) -> list:
    """A request's conversation with an empty assistant turn at its end: its prompt is what generation continues."""
    return [*conversation, {"role": "assistant", "content": ""}]


def assistant_spans(tokenizer, messages: list[dict]) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character span of each assistant answer in it (content + end of turn)."""
    render = tokenizer.apply_chat_template
    text = render(messages, tokenize=False)
    spans = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        opened = render(messages[:i], tokenize=False, add_generation_prompt=True)
        closed = render(messages[: i + 1], tokenize=False).rstrip()  # the newline after the end token is layout
        if not (text.startswith(opened) and text.startswith(closed) and len(closed) >= len(opened)):
            raise ConfigError(
                f"dataset.task=chat: the chat template of {type(tokenizer).__name__} renders earlier turns "
                "differently once later ones follow, so assistant turns cannot be located; use a model whose "
                "template is prefix-stable (ChatML, Llama 3) or task=generation"
            )
        spans.append((len(opened), len(closed)))
    return text, spans


@dataclass
class ChatRows(Encoder):
    """A conversation -> input ids, labels on assistant answers (all of them, or the last: dataset.assistant_turns)
    and prompt_length = where the last answer starts, so validation generates that answer from the turns before it."""

    def __call__(self, batch: dict) -> dict:
        s, tokenizer = self.settings, self.tokenizer
        if not getattr(tokenizer, "chat_template", None):
            raise ConfigError(f"dataset.task=chat: {type(tokenizer).__name__} of this model has no chat template")
        out = {"input_ids": [], "attention_mask": [], "labels": [], "prompt_length": []}
        for conversation in batch[s.messages_column]:
            messages = up_to_last_answer(as_messages(conversation, s), s)
            text, spans = assistant_spans(tokenizer, messages)
            if s.assistant_turns == "last":
                spans = spans[-1:]
            encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
            ids, offsets = encoded["input_ids"], encoded["offset_mapping"]
            learnt = [any(a <= start < b for a, b in spans) for start, _ in offsets]
            labels = [i if keep else IGNORE_INDEX for i, keep in zip(ids, learnt, strict=True)]
            cut = sum(1 for _, stop in offsets if stop <= spans[-1][0])  # tokens before the last answer
            answer = slice(cut, cut + s.max_target_length)
            keep = max(1, s.max_length - len(ids[answer]))  # the turns nearest the answer, as CausalRows keeps
            prompt = slice(max(0, cut - keep), cut)
            out["input_ids"].append(ids[prompt] + ids[answer])
            out["labels"].append(labels[prompt] + labels[answer])
            out["attention_mask"].append([1] * len(out["input_ids"][-1]))
            out["prompt_length"].append(cut - prompt.start)
        return out
