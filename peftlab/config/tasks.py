"""Task shapes: what (dataset.task, model.architecture) becomes — the one table every stage keys its registry on.

A shape decides the head (auto class), how rows are encoded and collated, the peft task type and the
LightningModule. Multiple choice on a generative model becomes text-to-text (the answer letter as the target).
"""

from peftlab.errors import ConfigError

TASKS = ("classification", "multiple_choice", "generation")
ARCHITECTURES = ("encoder", "seq2seq", "causal")

# classify: sequence-classification head; choose: multiple-choice head (one score per choice);
# seq2seq / causal: language-model head, targets generated (encoder-decoder / decoder-only with prompt masking).
SHAPES: dict[tuple[str, str], str] = {
    ("classification", "encoder"): "classify",
    ("classification", "seq2seq"): "classify",
    ("classification", "causal"): "classify",
    ("multiple_choice", "encoder"): "choose",
    ("multiple_choice", "seq2seq"): "seq2seq",
    ("multiple_choice", "causal"): "causal",
    ("generation", "seq2seq"): "seq2seq",
    ("generation", "causal"): "causal",
}
SHAPE_NAMES = ("classify", "choose", "seq2seq", "causal")
GENERATIVE_SHAPES = ("seq2seq", "causal")
LABELLED_SHAPES = ("classify", "choose")  # a fresh head sized to the dataset's labels
# Which methods cannot train a shape, and why, is each method's record (conf/peft/*.yaml `capabilities`).

# Metric names by how they are computed: on predicted class ids, or on generated text.
CLASS_METRICS = ("accuracy", "f1", "binary_f1", "mcc")
TEXT_METRICS = ("accuracy", "exact_match", "rougeL", "bleu")  # accuracy on text = exact match (answer letters)


def task_shape(task: str, architecture: str, dataset: str = "", model: str = "") -> str:
    shape = SHAPES.get((task, architecture))
    if shape is None:
        generative = sorted({a for (t, a) in SHAPES if t == task})
        raise ConfigError(
            f"dataset={dataset} ({task}) with model={model} ({architecture}): not possible; "
            f"{task} needs a {' or '.join(generative)} model (t5, gpt2, bloom or their _tiny twins)"
        )
    return shape


def metric_names_for(task: str, architecture: str) -> tuple[str, ...]:
    """The metrics a run of this task on this architecture can report."""
    if task == "multiple_choice":
        return ("accuracy",)
    return TEXT_METRICS if SHAPES.get((task, architecture)) in GENERATIVE_SHAPES else CLASS_METRICS
