"""Through the Lightning path (fit): each method on a twin writes metrics.json and an adapter/ that reloads;
the module's hooks give LoRA+ its optimizer and AdaLoRA its step budget."""

import json

import pytest
import torch
from conftest import compose_config

from peftlab.models.loading import load_base_model
from peftlab.models.methods import load_kwargs_for, load_trained
from peftlab.run import fit

COMBOS = [
    ("gpt2_tiny", "loraplus"),
    ("bloom_tiny", "adalora"),
    ("deberta_v3_tiny", "qlora"),
    ("t5_tiny", "ia3"),
    ("bloom_tiny", "prefix"),
    ("gpt2_tiny", "adapters"),
    ("t5_tiny", "head_only"),
]


def _loraplus_optimizer(result):
    """configure_optimizers built peft's LoRA+ optimizer: B (and 1-d weights) at ratio x the lr, A at the lr."""
    lr, ratio = result.settings.peft.lr, result.settings.peft.loraplus_lr_ratio
    groups = result.trainer.optimizers[0].param_groups
    assert sorted({g["initial_lr"] for g in groups if g["params"]}) == pytest.approx([lr, lr * ratio])


def _adalora_budget(result):
    """configure_optimizers gave AdaLoRA the run's planned steps; optimizer_step moved its rank budget."""
    config = json.loads((result.output_dir / "adapter" / "adapter_config.json").read_text())
    assert config["total_step"] == result.trainer.estimated_stepping_batches == result.trainer.global_step
    assert config["rank_pattern"]


EXTRA_CHECKS = {"loraplus": _loraplus_optimizer, "adalora": _adalora_budget}


@pytest.mark.parametrize(("family", "method"), COMBOS)
def test_fit_saves_a_reloadable_adapter(family, method, tmp_path):
    cfg = compose_config(
        [
            f"model={family}",
            f"peft={method}",
            "dataset.max_train_rows=96",
            "dataset.max_eval_rows=32",
            "trainer.max_epochs=1",
        ],
        output_dir=tmp_path,
    )
    result = fit(cfg)
    report = json.loads((tmp_path / "metrics.json").read_text())
    assert report["method"] == method and report["model"] == family
    assert 0 < report["params"]["trainable_pct"] < 100
    assert report["adapter_bytes"] > 0 and report["base_memory"]["loaded_mb"] > 0
    if method == "qlora":
        assert report["base_memory"]["loaded_mb"] < report["base_memory"]["full_precision_mb"]
    EXTRA_CHECKS.get(method, lambda result: None)(result)
    checkpoint = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert set(checkpoint["state_dict"]) == result.module.trainable_state_keys()

    settings = result.settings
    head = list(settings.model.head_modules)
    fresh = load_base_model(
        settings.model,
        "classify",
        list(settings.dataset.labels),
        result.tokenizer.pad_token_id,
        **load_kwargs_for(settings.peft, head),
    )
    reloaded = load_trained(fresh, settings.peft, tmp_path / "adapter").eval()
    batch = result.datamodule.collator([result.datamodule.val_dataset[i] for i in range(8)])
    batch.pop("labels")
    with torch.no_grad():
        got, want = reloaded(**batch).logits, result.module.model.eval()(**batch).logits
    # AdaLoRA's adapter keeps only the ranks it did not mask: the same sum without its zero terms, in another order
    assert torch.allclose(got, want, rtol=0, atol=1e-5) if method == "adalora" else torch.equal(got, want)
