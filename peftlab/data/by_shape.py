"""Task shape (config/tasks.py) -> how its rows are encoded and collated: the one table the data stage, evaluation
and serving look them up in, so a served request is encoded exactly as training rows were."""

from functools import partial

from transformers import DataCollatorForMultipleChoice, DataCollatorForSeq2Seq, DataCollatorWithPadding

from peftlab.data.collators import CausalCollator, PreferenceCollator
from peftlab.data.conversations import ChatRows
from peftlab.data.encoders import IGNORE_INDEX, CausalRows, ChoiceRows, ClassifyRows, PreferenceRows, Seq2SeqRows

# Shape -> encoder class (called with the tokenizer and the dataset's settings).
ENCODERS = {
    "classify": ClassifyRows,
    "choose": ChoiceRows,
    "seq2seq": Seq2SeqRows,
    "causal": CausalRows,
    "prefer": PreferenceRows,
    "chat": ChatRows,
}

# Shape -> collator factory (called with the tokenizer).
COLLATORS = {
    "classify": DataCollatorWithPadding,
    "choose": DataCollatorForMultipleChoice,
    "seq2seq": partial(DataCollatorForSeq2Seq, label_pad_token_id=IGNORE_INDEX),
    "causal": CausalCollator,
    "prefer": PreferenceCollator,
    "chat": CausalCollator,  # conversations collate as prompt + answer rows: prompt = the turns before the last answer
}
