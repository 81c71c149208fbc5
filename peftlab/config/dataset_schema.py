"""Schema of a dataset option: source (hub id, local folder), columns per task, labels, batching, decoding."""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from peftlab.config.checks import check, check_choice, check_positive
from peftlab.config.tasks import CLASS_METRICS, TASKS, TEXT_METRICS

TEXT_TASKS = ("generation", "preference")  # rows of a prompt and answer text, no labels
UNLABELLED_TASKS = (*TEXT_TASKS, "chat")
ASSISTANT_TURNS = ("all", "last")


@dataclass
class DatasetSettings:
    """One dataset option. Which column keys matter depends on `task` (checked in __post_init__)."""

    name: str
    task: str = "classification"
    hub_id: str | None = None
    hub_config: str | None = None
    data_dir: str | None = None
    generator: dict[str, Any] | None = None
    # classification: text (+ pair) -> label. multiple_choice: text = the question, optional context
    # (RACE's article), choices_column (a list, or a dict whose choice_text_key holds the list), label = the answer.
    text_column: str = "sentence"
    text_pair_column: str | None = None
    context_column: str | None = None
    choices_column: str | None = None
    choice_text_key: str | None = None
    label_column: str = "label"
    labels: list[str] = field(default_factory=list)
    # generation (and multiple choice on T5/GPT-2/BLOOM): prompt_template is str.format over the row's columns;
    # target_column holds the answer text. Loss is on the target only (causal LMs mask the prompt).
    prompt_template: str | None = None
    target_column: str | None = None
    max_target_length: int = 128
    # preference: prompt_template as above, target_column the chosen answer, rejected_column the rejected one
    # (the objective group decides the loss: dpo, ipo, orpo); validation also generates and scores against chosen.
    rejected_column: str | None = None
    # Causal models: wrap each prompt in the model's chat template as one user turn, the target being the assistant's
    # answer (SmolLM2-Instruct's ChatML); the template's tokens are prompt, masked from the loss like the rest of it.
    chat_template: bool = False
    # chat: the column of conversations (OpenAI `messages` [{role, content}] or ShareGPT `conversations`
    # [{from, value}]), rendered with the model's chat template; loss on every assistant answer or the last one.
    messages_column: str = "messages"
    assistant_turns: str = "all"
    # Decoding settings for validation and serving, passed to model.generate (e.g. num_beams, max_new_tokens).
    generation: dict[str, Any] = field(default_factory=lambda: {"max_new_tokens": 32, "num_beams": 1})
    train_split: str = "train"
    validation_split: str = "validation"
    # The held-out split only the test stage reads (evaluate.py split=test, peftlab.compare): a `<test_split>.*` file
    # in data_dir or the hub's split of that name. null: no test split (train is the whole train split). Where the
    # source has none (no such file; a hub split already used as validation), `test_holdout` of train is held out
    # instead (seeded, the same rows for every run) and removed from train, so train and test never overlap.
    test_split: str | None = None
    test_holdout: float = 0.1  # < 1: a fraction of the train rows; >= 1: a number of rows
    # Where the hub names a split differently from the local files (ag_news: validation -> test).
    hub_split_names: dict[str, str] = field(default_factory=dict)
    max_length: int = 128
    max_train_rows: int | None = None
    max_eval_rows: int | None = None
    # Generation tasks: validation decodes (and scores exact match, ROUGE ...) only this many rows, shared between
    # processes; the loss still covers every validation row. Decoding a real LM is most of a CPU validation's time.
    max_eval_generate_rows: int | None = None
    batch_size: int = 32
    eval_batch_size: int = 64
    # Training batches of similar lengths (data/sampling.py: shuffled, sorted within mega-batches of
    # `group_batches` batches, then the batches shuffled): less padding per step on data with varied lengths
    # (bench/README.md). Off only where rows are all about as long (demo).
    group_by_length: bool = True
    group_batches: int = 50
    # Causal tasks: training rows packed into bins of packing_length tokens (null: max_length), best-fit decreasing,
    # attention kept inside each row (data/packing.py); batch_size then counts bins. Validation is never packed.
    packing: bool = False
    packing_length: int | None = None
    num_workers: int = 0
    metric: str = "accuracy"
    metrics: list[str] = field(default_factory=lambda: ["accuracy", "f1"])

    def __post_init__(self) -> None:
        check_choice("task", self.task, TASKS)
        check(self.group_batches >= 1, "group_batches", self.group_batches, "batches per length-sorted group, >= 1")
        check_choice("assistant_turns", self.assistant_turns, ASSISTANT_TURNS)
        if self.task not in UNLABELLED_TASKS:
            check(len(self.labels) >= 2, "labels", self.labels, "a list of at least 2 label names")
            check(len(set(self.labels)) == len(self.labels), "labels", self.labels, "label names must be unique")
        if self.task == "multiple_choice":
            check(bool(self.choices_column), "choices_column", self.choices_column, "the column holding the choices")
        if self.task in TEXT_TASKS:
            check(bool(self.prompt_template), "prompt_template", self.prompt_template, "e.g. '{question}\\nSQL:'")
            check(bool(self.target_column), "target_column", self.target_column, "the column holding the answer")
        if self.task == "preference":
            check(bool(self.rejected_column), "rejected_column", self.rejected_column, "the rejected answer's column")
        for key in ("max_length", "max_target_length", "batch_size", "eval_batch_size"):
            check_positive(key, getattr(self, key))
        if self.packing_length is not None:
            allowed = f"tokens per bin, >= max_length ({self.max_length}), or null (= max_length)"
            check(self.packing_length >= self.max_length, "packing_length", self.packing_length, allowed)
        holdout = self.test_holdout
        fraction_or_rows = 0 < holdout < 1 or (holdout >= 1 and float(holdout).is_integer())
        check(fraction_or_rows, "test_holdout", holdout, "a fraction in (0, 1) or a whole number of rows >= 1")
        check(
            self.test_split not in (self.train_split, self.validation_split),
            "test_split",
            self.test_split,
            "must differ from train_split and validation_split (a test split plays no part in choosing anything)",
        )
        for key in ("max_train_rows", "max_eval_rows", "max_eval_generate_rows"):
            check_positive(key, getattr(self, key), allow_none=True)
        check(self.num_workers >= 0, "num_workers", self.num_workers, "must be >= 0")
        known = tuple(dict.fromkeys(CLASS_METRICS + TEXT_METRICS))
        for name in self.metrics:
            check_choice("metrics", name, known)
        check(self.metric in self.metrics, "metric", self.metric, f"must be one of metrics={self.metrics}")
        check(
            self.data_dir is not None or self.hub_id is not None,
            "data_dir",
            None,
            "set dataset.data_dir=<folder with train/validation files> (this dataset has no hub_id)",
        )

    def check_files(self) -> None:
        """The local folder exists (skipped where no rows are read, e.g. when serving a trained adapter)."""
        if self.data_dir is not None and self.generator is None:
            check(Path(self.data_dir).expanduser().is_dir(), "data_dir", self.data_dir, "folder does not exist")
