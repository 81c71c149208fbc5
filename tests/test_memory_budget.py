"""hardware.max_memory_gb (trainer/memory_budget.py): the micro-batch that fits, accumulated into the same step."""

import json
from types import SimpleNamespace

import pytest
import torch
from conftest import compose_config

from peftlab.errors import ConfigError
from peftlab.run import fit
from peftlab.trainer import memory_budget
from peftlab.trainer.memory_budget import MemoryBudget, choose_micro_batch, saved_activation_bytes

GB = 10**9


def _rows(n: int) -> list[dict]:
    """Answers of 1 to 4 clauses: micro-batches of one step hold very different numbers of learnt tokens."""
    return [
        {"question": f"Who wears number {i}?", "context": "table: players\ncolumns: name, number",
         "answer": f"SELECT name FROM players WHERE number = {i}" + " AND team = 'Leeds'" * (i % 4)}
        for i in range(n)
    ]  # fmt: skip


def test_the_largest_divisor_of_the_batch_that_fits_is_chosen():
    fixed, per_row = 1 * GB, GB // 10  # each row keeps 0.1 GB of activations: 0.2 GB at the peak
    assert memory_budget.PEAK_PER_KEPT == 2.0
    assert choose_micro_batch(16, int(4.3 * GB), fixed, per_row) == 16  # 1 + 16 × 0.2 = 4.2 GB
    assert choose_micro_batch(16, int(3.5 * GB), fixed, per_row) == 8  # 12 rows would fit, but 12 does not divide 16
    assert choose_micro_batch(12, int(1.7 * GB), fixed, per_row) == 3
    assert choose_micro_batch(16, int(1.1 * GB), fixed, per_row) is None  # not even one row


def test_a_resume_keeps_the_micro_batch_its_checkpoint_was_trained_with():
    """The data position of a checkpoint counts micro-batches: a resumed fit whose estimate differs (another machine,
    another budget) continues with the saved choice."""
    trainer = SimpleNamespace(datamodule=SimpleNamespace(micro_batch_size=None), accumulate_grad_batches=1)
    budget = MemoryBudget(3.0)
    budget._trainer = trainer
    budget._apply(trainer, 8, 2)  # what setup chose here
    budget.load_state_dict({"micro_batch": 4, "accumulate": 4})  # what the interrupted attempt trained with
    assert (trainer.datamodule.micro_batch_size, trainer.accumulate_grad_batches) == (4, 4)
    assert budget.state_dict() == {"micro_batch": 4, "accumulate": 4}


def test_the_probe_counts_what_autograd_keeps_and_not_the_weights():
    """A bias-free Linear keeps its input for the weight's gradient (the weight itself is not counted)."""
    module = torch.nn.Linear(256, 8, bias=False)
    module.loss = lambda batch: module(batch["x"]).sum()
    x = torch.randn(64, 256)
    assert saved_activation_bytes(module, {"x": x}) == x.numel() * 4
    assert saved_activation_bytes(module, {"x": x.detach().requires_grad_(False)[:16]}) == 64 * 256 * 4  # a view


def _fit(tmp_path, write_jsonl, name: str, *extra: str):
    folder = write_jsonl(_rows(24), _rows(8), folder="sql")
    run = tmp_path / name
    no_dropout = [f"++model.config_overrides.{k}=0.0" for k in ("resid_pdrop", "embd_pdrop", "attn_pdrop")]
    overrides = ["model=gpt2_tiny", "dataset=sql", f"dataset.data_dir={folder}", "peft.lr=1e-2", "peft.lora_dropout=0"]
    short = ["trainer.max_epochs=2", "dataset.batch_size=8", "dataset.generation.max_new_tokens=4"]
    result = fit(compose_config([*overrides, *no_dropout, *short, *extra], output_dir=run))
    weights = {n: p.detach().clone() for n, p in result.module.named_parameters() if p.requires_grad}
    return weights, json.loads((run / "metrics.json").read_text())


def test_micro_batches_accumulate_to_the_whole_batchs_step(tmp_path, write_jsonl, monkeypatch):
    """Batches of 8 rows cut into 4 micro-batches of 2 (the budget's choice, forced here): the same effective batch,
    the same rows per step, and weights equal to those of whole batches within float32 rounding — each micro-batch
    weighed by its learnt tokens (a mean of micro-batch means would not be: a short answer's tokens count more)."""
    whole, whole_report = _fit(tmp_path, write_jsonl, "whole")
    monkeypatch.setattr(memory_budget, "choose_micro_batch", lambda batch_size, *_: 2)
    split, split_report = _fit(tmp_path, write_jsonl, "split", "hardware.max_memory_gb=2")
    assert split_report["batch"] == {**whole_report["batch"], "per_device": 2, "accumulate_grad_batches": 4}
    assert split_report["batch"]["total"] == whole_report["batch"]["total"] == 8
    assert [h["step"] for h in split_report["history"]] == [h["step"] for h in whole_report["history"]]
    for name, value in whole.items():
        assert not torch.equal(value, torch.zeros_like(value)) and torch.allclose(split[name], value, atol=2e-6), name
    assert split_report["best"]["val/loss"] == pytest.approx(whole_report["best"]["val/loss"], rel=1e-5)


def test_a_budget_one_row_cannot_fit_is_refused_in_one_line(tmp_path, write_jsonl):
    with pytest.raises(ConfigError, match=r"^hardware.max_memory_gb=0.1: one row of \d+ tokens needs about") as err:
        _fit(tmp_path, write_jsonl, "tiny", "hardware.max_memory_gb=0.1")
    assert "\n" not in str(err.value)
