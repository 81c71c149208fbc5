"""Row -> model text, per task: which columns a task reads, multiple-choice options, generation prompts.

Training, evaluation and serving all format rows through these functions, so a served adapter sees its
inputs exactly as it saw them in training.
"""

import string

from peftlab.config.dataset_schema import DatasetSettings
from peftlab.data.labels import label_id

# What a row with choices offers templates and targets besides its columns: the right choice's text and the others
# (e.g. distractor generation on RACE: prompt with {correct_choice}, target_column: wrong_choices).
DERIVED_FIELDS = ("correct_choice", "wrong_choices")


def template_fields(template: str) -> list[str]:
    return [name for _, name, _, _ in string.Formatter().parse(template) if name]


def required_columns(settings: DatasetSettings) -> list[str]:
    """Columns a split must have for settings.task; the last one is the label/target column."""
    if settings.task == "chat":
        return [settings.messages_column]
    if settings.task in ("generation", "preference"):
        rejected = [settings.rejected_column] if settings.task == "preference" else []
        wanted = [*template_fields(settings.prompt_template), *rejected, settings.target_column]
        columns = [c for c in wanted if c not in DERIVED_FIELDS]
        if len(columns) < len(wanted):  # derived from the choices and the answer
            columns += [settings.choices_column, settings.label_column]
        return list(dict.fromkeys(columns))
    columns = [settings.text_column]
    if settings.task == "multiple_choice":
        columns += [c for c in (settings.context_column, settings.choices_column) if c]
    elif settings.text_pair_column:
        columns.append(settings.text_pair_column)
    return [*columns, settings.label_column]


def choices_of(row: dict, settings: DatasetSettings) -> list[str]:
    """RACE keeps a list of options; CommonsenseQA a {label: [...], text: [...]} dict."""
    choices = row[settings.choices_column]
    return list(choices[settings.choice_text_key] if settings.choice_text_key else choices)


def choice_question(row: dict, settings: DatasetSettings) -> str:
    """The text every choice is paired with (encoder multiple-choice head)."""
    question = row[settings.text_column]
    return f"{row[settings.context_column]}\n{question}" if settings.context_column else question


def multiple_choice_prompt(row: dict, settings: DatasetSettings) -> str:
    """Text-to-text multiple choice: the options listed with their letters, the answer letter as target."""
    options = " ".join(
        f"({letter}) {text}" for letter, text in zip(settings.labels, choices_of(row, settings), strict=True)
    )
    return f"{choice_question(row, settings)}\nOptions: {options}\nAnswer:"


def row_fields(row: dict, settings: DatasetSettings) -> dict:
    """The row's columns, plus DERIVED_FIELDS when it has choices and an answer."""
    if not settings.choices_column or row.get(settings.label_column) in (None, ""):
        return row
    choices = choices_of(row, settings)
    right = label_id(row[settings.label_column], list(settings.labels))
    return {**row, "correct_choice": choices[right], "wrong_choices": [c for i, c in enumerate(choices) if i != right]}


def prompt_text(row: dict, settings: DatasetSettings) -> str:
    if settings.task == "multiple_choice":
        return multiple_choice_prompt(row, settings)
    fields, values = template_fields(settings.prompt_template), row_fields(row, settings)
    return settings.prompt_template.format(**{name: values.get(name) or "" for name in fields})


def target_texts(row: dict, settings: DatasetSettings) -> list[str]:
    """The row's targets: one, or each item of a list-valued target (every one a training example)."""
    if settings.task == "multiple_choice":  # the answer letter, whether the row stores the letter or its id
        value = row[settings.label_column]
        return [settings.labels[value] if isinstance(value, int) else str(value)]
    value = row_fields(row, settings)[settings.target_column]
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def row_from_text(text: str, settings: DatasetSettings) -> dict:
    """A served request given as one string: it fills the task's first input column."""
    first = required_columns(settings)[0]
    return {first: text}
