"""dataset.packing=true: best-fit-decreasing bins, per-row positions, and the same loss and gradients as unpacked."""

import csv
import random

import pytest
import torch
from conftest import compose_config, shared_split_dir

from peftlab.config import validate
from peftlab.data.datamodule import TextDataModule
from peftlab.data.encoders import IGNORE_INDEX
from peftlab.data.packing import PackedCollator, best_fit_decreasing
from peftlab.errors import ConfigError
from peftlab.models.loading import load_base_model, load_tokenizer
from peftlab.modules.causal_loss import answer_only_loss
from peftlab.run import fit


def test_best_fit_decreasing_puts_each_row_into_the_fullest_bin_it_fits():
    assert best_fit_decreasing([5, 4, 3, 3, 2, 1], 8) == [[0, 2], [1, 3, 5], [4]]
    rng = random.Random(0)
    lengths = [rng.randint(1, 100) for _ in range(500)]
    bins = best_fit_decreasing(lengths, 128)
    assert sorted(r for b in bins for r in b) == list(range(500))  # every row exactly once
    assert all(sum(lengths[r] for r in b) <= 128 for b in bins)
    assert len(bins) <= 1.1 * sum(lengths) / 128 + 1  # BFD: within a few bins of the token count's lower bound
    with pytest.raises(ValueError, match="row 1 has 9 tokens, more than a bin's 8"):
        best_fit_decreasing([3, 9], 8)


class PadTokenizer:
    pad_token_id = 0


def test_a_bin_is_its_rows_in_a_row_with_positions_restarting_and_each_first_label_ignored():
    rows = [{"input_ids": [5, 6, 7], "labels": [-100, 6, 7]}, {"input_ids": [8, 9], "labels": [8, 9]}]
    batch = PackedCollator(PadTokenizer())([rows, rows[:1]])
    assert batch["input_ids"].tolist() == [[5, 6, 7, 8, 9], [5, 6, 7, 0, 0]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 0, 1], [0, 1, 2, 0, 1]]  # padding: a segment of its own
    assert batch["labels"].tolist() == [[-100, 6, 7, -100, 9], [-100, 6, 7, -100, -100]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]
    assert "attention_mask" not in answer_inputs(batch)


def answer_inputs(batch):
    from peftlab.modules.causal_loss import model_inputs

    return model_inputs(batch)


@pytest.fixture(scope="module")
def sql_rows(tmp_path_factory):
    """(settings, tokenizer, SmolLM2-twin base, the datamodule with packing on) over 24 real text->SQL rows."""
    sql = shared_split_dir("text2sql_wikisql")
    out = tmp_path_factory.mktemp("packing")
    overrides = ["model=smollm2_tiny", "dataset=sql", f"dataset.data_dir={sql}", "dataset.max_train_rows=24",
                 "dataset.packing=true", "dataset.packing_length=320"]  # fmt: skip
    settings = validate(compose_config(overrides, out))
    tokenizer = load_tokenizer(settings.model)
    data = TextDataModule(settings.dataset, tokenizer, settings.shape, seed=0)
    data.setup("fit")
    torch.manual_seed(0)
    model = load_base_model(settings.model, settings.shape, [], tokenizer.pad_token_id)
    return data, model


def per_token_losses(model, batch) -> torch.Tensor:
    """Each learnt token's cross-entropy, in the order the tokens appear (row by row)."""
    from peftlab.modules.causal_loss import model_inputs

    logits = model(**model_inputs(batch)).logits[:, :-1]
    targets = batch["labels"][:, 1:]
    learnt = targets != IGNORE_INDEX
    return torch.nn.functional.cross_entropy(logits[learnt].float(), targets[learnt], reduction="none")


def test_packed_bins_give_each_token_the_loss_and_the_batch_the_gradients_of_the_unpacked_rows(sql_rows):
    data, model = sql_rows
    bins = data.train_items
    assert len(bins) < len(data.train_dataset) / 2  # rows of ~60-130 tokens, three or more to a 320-token bin
    rows = [row for b in range(len(bins)) for row in bins[b]]
    packed = data.train_collator([bins[b] for b in range(len(bins))])
    unpacked = data.collator(rows)
    model.eval()  # no dropout: the two forwards must see the same function
    with torch.no_grad():
        torch.testing.assert_close(per_token_losses(model, packed), per_token_losses(model, unpacked),
                                   rtol=1e-4, atol=1e-4)  # fmt: skip
    grads = []
    for batch in (packed, unpacked):
        model.zero_grad()
        loss = answer_only_loss(model, batch)
        loss.backward()
        grads.append((loss.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]))
    torch.testing.assert_close(grads[0][0], grads[1][0], rtol=1e-5, atol=1e-5)
    for packed_grad, unpacked_grad in zip(grads[0][1], grads[1][1], strict=True):
        torch.testing.assert_close(packed_grad, unpacked_grad, rtol=1e-3, atol=1e-5)


def test_without_position_ids_rows_of_a_bin_would_attend_to_each_other(sql_rows):
    """The control: the same bin with a plain causal mask gives other losses, so the test above can fail."""
    data, model = sql_rows
    packed = data.train_collator([data.train_items[0]])
    plain = {"input_ids": packed["input_ids"], "attention_mask": torch.ones_like(packed["input_ids"]),
             "labels": packed["labels"]}  # fmt: skip
    with torch.no_grad():
        assert not torch.allclose(per_token_losses(model, packed), per_token_losses(model, plain), atol=1e-3)


def test_a_packed_run_trains_and_counts_its_bins_as_batches(tmp_path):
    sql = shared_split_dir("text2sql_wikisql")
    overrides = ["model=smollm2_tiny", "dataset=sql", f"dataset.data_dir={sql}", "dataset.max_train_rows=48",
                 "dataset.max_eval_rows=8", "dataset.packing=true", "dataset.packing_length=480",
                 "dataset.batch_size=4", "trainer.max_epochs=2", "peft=lora", "peft.lr=3e-2"]  # fmt: skip
    result = fit(compose_config(overrides, tmp_path))
    bins = len(result.datamodule.train_items)
    assert bins < 48 / 2 and result.trainer.global_step == 2 * -(-bins // 4)
    rows = list(csv.DictReader((result.output_dir / "csv" / "metrics.csv").open()))
    losses = [float(r["train/loss_step"]) for r in rows if r.get("train/loss_step")]
    assert len(losses) == result.trainer.global_step and losses[-1] < 0.95 * losses[0]  # measured 11.10 -> 9.97


def test_packing_is_refused_where_rows_cannot_share_a_bin(tmp_path):
    with pytest.raises(ConfigError, match=r"dataset.packing=true: packs causal training rows .* is classify"):
        validate(compose_config(["model=smollm2_tiny", "dataset=demo", "dataset.packing=true"], tmp_path))
    with pytest.raises(ConfigError, match=r"dataset.packing=true with peft=prefix: not supported"):
        validate(compose_config(["model=smollm2_tiny", "dataset=sql", "peft=prefix", "dataset.packing=true"], tmp_path))
    with pytest.raises(ConfigError, match=r"dataset.packing_length=8: .*>= max_length \(160\)"):
        validate(compose_config(["model=smollm2_tiny", "dataset=sql", "dataset.packing_length=8"], tmp_path))
