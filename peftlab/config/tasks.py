"""Task shapes: what (dataset.task, model.architecture) becomes — the one table every stage keys its registry on.

A shape decides the head (auto class), how rows are encoded and collated, the peft task type and the
LightningModule. Multiple choice on a generative model becomes text-to-text (the answer letter as the target).
"""

from peftlab.errors import ConfigError

TASKS = ("classification", "multiple_choice", "generation", "preference", "chat")
ARCHITECTURES = ("encoder", "seq2seq", "causal")

# classify: sequence-classification head; choose: multiple-choice head (one score per choice);
# seq2seq / causal: language-model head, targets generated (encoder-decoder / decoder-only with prompt masking);
# prefer: a decoder scored on a chosen and a rejected answer to one prompt; chat: a decoder on whole conversations.
SHAPES: dict[tuple[str, str], str] = {
    ("classification", "encoder"): "classify",
    ("classification", "seq2seq"): "classify",
    ("classification", "causal"): "classify",
    ("multiple_choice", "encoder"): "choose",
    ("multiple_choice", "seq2seq"): "seq2seq",
    ("multiple_choice", "causal"): "causal",
    ("generation", "seq2seq"): "seq2seq",
    ("generation", "causal"): "causal",
    # (prompt, chosen, rejected) rows: a preference objective (conf/objective: dpo, ipo, orpo) on a decoder
    ("preference", "causal"): "prefer",
    # conversations (OpenAI messages, ShareGPT turns) in the model's chat template, loss on assistant turns
    ("chat", "causal"): "chat",
}
SHAPE_NAMES = ("classify", "choose", "seq2seq", "causal", "prefer", "chat")
GENERATIVE_SHAPES = ("seq2seq", "causal", "prefer", "chat")
# Shapes whose model is a decoder-only LM with its LM head: loaded, wrapped by peft, exported and served alike (a
# preference-tuned or chat-tuned adapter generates as any causal one does).
CAUSAL_SHAPES = ("causal", "prefer", "chat")
PACKABLE_SHAPES = ("causal", "chat")  # dataset.packing=true: prompt + answer rows (a preference pair is two rows)
LABELLED_SHAPES = ("classify", "choose")  # a fresh head sized to the dataset's labels
# Which methods cannot train a shape, and why, is each method's record (conf/peft/*.yaml `capabilities`).

# Metric names by how they are computed: on predicted class ids, or on generated text.
CLASS_METRICS = ("accuracy", "f1", "binary_f1", "mcc")
TEXT_METRICS = ("accuracy", "exact_match", "rougeL", "bleu")  # accuracy on text = exact match (answer letters)


EXAMPLE_MODELS = {"encoder": ("minilm", "deberta"), "seq2seq": ("t5",), "causal": ("gpt2", "bloom", "smollm2")}


def task_shape(task: str, architecture: str, dataset: str = "", model: str = "") -> str:
    shape = SHAPES.get((task, architecture))
    if shape is None:
        fitting = sorted({a for (t, a) in SHAPES if t == task})
        examples = ", ".join(m for a in fitting for m in EXAMPLE_MODELS[a])
        raise ConfigError(
            f"dataset={dataset} ({task}) with model={model} ({architecture}): not possible; "
            f"{task} needs a {' or '.join(fitting)} model ({examples} or their _tiny twins)"
        )
    return shape


def metric_names_for(task: str, architecture: str) -> tuple[str, ...]:
    """The metrics a run of this task on this architecture can report."""
    if task == "multiple_choice":
        return ("accuracy",)
    return TEXT_METRICS if SHAPES.get((task, architecture)) in GENERATIVE_SHAPES else CLASS_METRICS
