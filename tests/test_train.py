"""End to end on the demo set: loss falls, accuracy beats chance, the base stays frozen, outputs round-trip."""

import csv
import json

import pytest
import torch
from conftest import compose_config
from peft import PeftModel

from peftlab.config import validate
from peftlab.models.loading import load_base_model
from peftlab.run import fit

SHRINK = [
    "dataset.max_train_rows=640",
    "dataset.max_eval_rows=200",
    "trainer.max_epochs=2",
    "seed=7",
    "peft.lr=2e-3",
    "dataset.batch_size=16",
]


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("lora_run")
    return fit(compose_config(SHRINK, output_dir=out))


def _fresh_base(result):
    settings = validate(compose_config(SHRINK, output_dir=result.output_dir))
    return load_base_model(settings.model, "classify", list(settings.dataset.labels)).eval()


def _batch(result, n=16):
    return result.datamodule.collator([result.datamodule.val_dataset[i] for i in range(n)])


def test_loss_falls_and_accuracy_beats_chance(lora_run):
    rows = list(csv.DictReader((lora_run.output_dir / "csv" / "metrics.csv").open()))
    losses = [float(r["train/loss_step"]) for r in rows if r.get("train/loss_step")]
    assert len(losses) >= 60
    assert sum(losses[-5:]) / 5 < 0.7 * sum(losses[:5]) / 5
    assert lora_run.best_metric >= 0.8  # chance is 0.5 on the balanced demo set


def test_outputs_exist_and_metrics_json_is_complete(lora_run):
    report = json.loads((lora_run.output_dir / "metrics.json").read_text())
    for key in ("best", "last", "params", "train_time_s", "samples_per_s", "peak_memory", "adapter_bytes"):
        assert report[key], key
    assert report["best"]["val/accuracy"] == pytest.approx(lora_run.best_metric)
    assert report["samples_per_s"] > 0 and report["train_samples"] == 640 * 2
    adapter = lora_run.output_dir / "adapter"
    assert (adapter / "adapter_config.json").is_file() and (adapter / "adapter_model.safetensors").is_file()
    assert (lora_run.output_dir / "config.yaml").is_file()


def test_trainable_count_matches_independent_count(lora_run):
    report = json.loads((lora_run.output_dir / "metrics.json").read_text())
    r, hidden, layers, targets = 8, 384, 6, 2  # query, value: 384 -> 384 in each of 6 layers
    head = hidden * 2 + 2
    assert report["params"]["trainable"] == layers * targets * r * (hidden + hidden) + head


def test_frozen_base_is_bit_identical_and_only_lora_and_head_changed(lora_run):
    fresh = dict(_fresh_base(lora_run).named_parameters())
    trained = lora_run.module.model
    changed = []
    compared = 0
    for name, param in trained.named_parameters():
        if "lora_" in name or "classifier" in name:  # the head is new (random init), not part of the base
            continue
        base_name = name.replace("base_model.model.", "").replace(".base_layer", "")
        assert not param.requires_grad and torch.equal(param.detach(), fresh[base_name]), name
        compared += 1
    assert compared == len([n for n in fresh if not n.startswith("classifier")])
    for name, param in trained.named_parameters():
        if param.requires_grad and "lora_B" in name:
            changed.append(bool(param.detach().abs().sum() > 0))  # lora_B starts at zero
    assert changed and all(changed)


def test_adapter_reloads_onto_fresh_base_with_identical_logits(lora_run):
    batch = _batch(lora_run)
    model = lora_run.module.model.eval()
    reloaded = PeftModel.from_pretrained(_fresh_base(lora_run), lora_run.output_dir / "adapter").eval()
    with torch.no_grad():
        expected = model(**batch).logits
        got = reloaded(**batch).logits
    assert torch.equal(expected, got)


def test_checkpoint_holds_only_trainable_weights_and_resumes(lora_run, tmp_path):
    ckpt_path = lora_run.output_dir / "checkpoints" / "last.ckpt"
    checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    trainable = lora_run.module.trainable_state_keys()
    assert set(checkpoint["state_dict"]) == trainable
    assert ckpt_path.stat().st_size < 3 * 2**20  # the 22 M-param base (~90 MB) is not in it
    resumed = fit(compose_config([*SHRINK, "trainer.max_epochs=3", f"ckpt_path={ckpt_path}"], output_dir=tmp_path))
    assert resumed.trainer.global_step == 3 * 40  # continued from step 80, not from 0
    # the curve of the whole run: the two epochs before the checkpoint travel in it (RunStats' state)
    assert [h["epoch"] for h in resumed.report["history"]] == [0, 1, 2]
    assert resumed.report["history"][:2] == lora_run.report["history"]
    assert resumed.report["train_samples"] == 3 * lora_run.report["train_samples"] / 2


@pytest.mark.parametrize("method", ["full", "head_only"])
def test_baselines_train_and_save_a_full_model(method, tmp_path):
    from transformers import AutoModelForSequenceClassification

    result = fit(
        compose_config(
            [*SHRINK, f"peft={method}", "trainer.max_epochs=1", "dataset.max_train_rows=128"], output_dir=tmp_path
        )
    )
    report = result.report
    assert report["method"] == method
    expected_trainable = report["params"]["total"] if method == "full" else 384 * 2 + 2
    assert report["params"]["trainable"] == expected_trainable
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "adapter").eval()
    batch = _batch(result)
    with torch.no_grad():
        assert torch.equal(reloaded(**batch).logits, result.module.model.eval()(**batch).logits)
