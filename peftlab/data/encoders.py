"""Batched `datasets.map` functions, one per task shape: raw rows -> token ids and labels.

Each encoder's class name and the settings in FINGERPRINT_KEYS make up the tokenisation cache's fingerprint.
"""

import functools
import hashlib
import json
from dataclasses import dataclass
from functools import cached_property

from peftlab.config.dataset_schema import DatasetSettings
from peftlab.data.formatting import choice_question, choices_of, prompt_text, target_texts
from peftlab.data.labels import label_id
from peftlab.errors import ConfigError

IGNORE_INDEX = -100  # labels the loss skips (prompt tokens, padding), as in torch's cross_entropy


def _rows(batch: dict) -> list[dict]:
    keys = list(batch)
    return [dict(zip(keys, values, strict=True)) for values in zip(*batch.values(), strict=False)]


def end_token_id(tokenizer) -> int:
    """The token that ends a target (EOS): learnt by the loss, and where generation stops."""
    if tokenizer.eos_token_id is None:
        raise ConfigError(f"model.tokenizer: {type(tokenizer).__name__} has no EOS token to end generation targets")
    return tokenizer.eos_token_id


# The settings an encoding depends on: they go into the tokenisation cache's fingerprint.
FINGERPRINT_KEYS = (
    "task", "text_column", "text_pair_column", "context_column", "choices_column", "choice_text_key",
    "label_column", "labels", "prompt_template", "target_column", "max_length", "max_target_length", "chat_template",
    "rejected_column", "messages_column", "assistant_turns",
)  # fmt: skip


def tokenizer_fingerprint(tokenizer) -> str:
    """Stable across processes (unlike hashing the object): class, vocabulary and normalisation rules.

    sha256 of sorted JSON rather than datasets' Hasher (which pickles the state): 0.06 s instead of 0.13 s for
    MiniLM's 30k vocabulary, paid by every run and sweep job (the encoder keeps it for both splits).
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        state = repr(sorted(tokenizer.get_vocab().items()))
        return _sha256_of([type(tokenizer).__name__, state, tokenizer.model_max_length])
    return _fast_fingerprint(type(tokenizer).__name__, backend.to_str(), tokenizer.model_max_length)


@functools.lru_cache(maxsize=8)
def _fast_fingerprint(name: str, serialized: str, model_max_length: int) -> str:
    """A fast tokenizer's fingerprint from its serialised state, once per state and process: a sweep's jobs load the
    same tokenizer (3 ms to serialise, 30 ms to parse, filter and hash)."""
    # Calling the tokenizer records its last truncation/padding in this state: leave those out, or the
    # fingerprint would depend on whether an earlier split was tokenised or read from the cache.
    state = {k: v for k, v in json.loads(serialized).items() if k not in ("truncation", "padding")}
    return _sha256_of([name, state, model_max_length])


def _sha256_of(parts: list) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


@dataclass
class Encoder:
    tokenizer: object
    settings: DatasetSettings

    @cached_property
    def tokenizer_hash(self) -> str:
        """The tokenizer's fingerprint, once per encoder (both splits share it)."""
        return tokenizer_fingerprint(self.tokenizer)

    def fingerprint_parts(self) -> list:
        values = (getattr(self.settings, key) for key in FINGERPRINT_KEYS)
        return [type(self).__name__, *(list(v) if isinstance(v, (list, tuple)) else v for v in values)]


@dataclass
class ClassifyRows(Encoder):
    """Text (and pair) -> input ids; label names or ids -> `labels` ids."""

    def __call__(self, batch: dict) -> dict:
        s = self.settings
        pairs = batch[s.text_pair_column] if s.text_pair_column else None
        encoded = self.tokenizer(batch[s.text_column], pairs, truncation=True, max_length=s.max_length)
        encoded["labels"] = [label_id(v, list(s.labels)) for v in batch[s.label_column]]
        return encoded


@dataclass
class ChoiceRows(Encoder):
    """(question, choice_i) pairs -> [num_choices, length] ids per row, for a multiple-choice head."""

    def __call__(self, batch: dict) -> dict:
        s = self.settings
        out = {"input_ids": [], "attention_mask": [], "labels": []}
        for row in _rows(batch):
            choices = choices_of(row, s)
            encoded = self.tokenizer(
                [choice_question(row, s)] * len(choices), choices, truncation="only_first", max_length=s.max_length
            )
            out["input_ids"].append(encoded["input_ids"])
            out["attention_mask"].append(encoded["attention_mask"])
            out["labels"].append(label_id(row[s.label_column], list(s.labels)))
        return out


@dataclass
class Seq2SeqRows(Encoder):
    """Prompt -> encoder ids; target + end token -> decoder labels (T5)."""

    def __call__(self, batch: dict) -> dict:
        s = self.settings
        pairs = [(prompt_text(r, s), t) for r in _rows(batch) for t in target_texts(r, s)]  # one example per target
        encoded = self.tokenizer([p for p, _ in pairs], truncation=True, max_length=s.max_length)
        end = end_token_id(self.tokenizer)
        targets = self.tokenizer([t for _, t in pairs], add_special_tokens=False)["input_ids"]
        encoded["labels"] = [[*t[: s.max_target_length - 1], end] for t in targets]
        return encoded


@dataclass
class CausalRows(Encoder):
    """Prompt + " " + target + EOS as one sequence; labels are IGNORE_INDEX on the prompt (loss on the answer only).

    The text is tokenised once and cut where the prompt's characters end (offsets), so the token ids are what the
    tokenizer gives for the whole text: no stray token at the seam, as tokenising `" " + target` alone leaves with
    sentencepiece-style vocabularies ("▁" then "▁answer"). `prompt_length` lets the collator cut the prompt back out
    for generation at validation time, so generation continues exactly the tokens training saw.
    """

    def __call__(self, batch: dict) -> dict:
        s = self.settings
        return self.encode([(prompt_text(r, s), t) for r in _rows(batch) for t in target_texts(r, s)])

    def encode(self, pairs: list[tuple[str, str]]) -> dict:
        """(prompt, answer) pairs -> ids, labels (the answer's tokens and EOS), prompt lengths."""
        s, tokenizer = self.settings, self.tokenizer
        end = end_token_id(tokenizer)
        start = [tokenizer.bos_token_id] if getattr(tokenizer, "add_bos_token", False) else []  # Llama-style BOS
        if s.chat_template:  # the answer starts the assistant's turn, right after the template's own text
            pairs = [(chat_prompt(tokenizer, p), t) for p, t in pairs]
        prompts = [p for p, _ in pairs]
        texts = [f"{p}{t}" if s.chat_template else f"{p} {t}" for p, t in pairs]
        encoded = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)
        out = {"input_ids": [], "attention_mask": [], "labels": [], "prompt_length": []}
        for ids, offsets, prompt in zip(encoded["input_ids"], encoded["offset_mapping"], prompts, strict=True):
            cut = sum(1 for _, stop in offsets if stop <= len(prompt))  # tokens wholly inside the prompt
            target = ids[cut:][: s.max_target_length - 1]
            target = target if target[-1:] == [end] else [*target, end]  # EOS exactly once
            prompt_ids = [*start, *ids[:cut]][-max(1, s.max_length - len(target)) :]  # keep the prompt's end
            out["input_ids"].append(prompt_ids + target)
            out["attention_mask"].append([1] * (len(prompt_ids) + len(target)))
            out["labels"].append([IGNORE_INDEX] * len(prompt_ids) + target)
            out["prompt_length"].append(len(prompt_ids))
        return out


@dataclass
class PreferenceRows(CausalRows):
    """One prompt with its chosen (target_column) and rejected (rejected_column) answers, each encoded as CausalRows
    encodes an answer: the chosen under the usual keys (validation generates from its prompt and scores against it),
    the rejected under rejected_*. A list of chosen answers gives one pair per item, each with the rejected one."""

    def __call__(self, batch: dict) -> dict:
        s = self.settings
        rows = [(prompt_text(r, s), t, str(r[s.rejected_column])) for r in _rows(batch) for t in target_texts(r, s)]
        chosen = self.encode([(p, t) for p, t, _ in rows])
        rejected = self.encode([(p, r) for p, _, r in rows])
        return {**chosen, **{f"rejected_{k}": rejected[k] for k in ("input_ids", "attention_mask", "labels")}}


def chat_prompt(tokenizer, prompt: str) -> str:
    """`prompt` as the user's turn in the tokenizer's chat template, opened for the assistant's answer."""
    if not getattr(tokenizer, "chat_template", None):
        raise ConfigError(f"dataset.chat_template=true: {type(tokenizer).__name__} of this model has no chat template")
    messages = [{"role": "user", "content": prompt}]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
