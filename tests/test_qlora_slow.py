"""Slow, real data: QLoRA (4-bit NF4 base on CPU) on the packaged MiniLM reaches >= 83 % SST-2 dev accuracy."""

import json

import pytest
from conftest import compose_config, shared_split_dir

from peftlab.run import fit


@pytest.mark.slow
def test_minilm_qlora_sst2_dev_accuracy(tmp_path):
    data_dir = shared_split_dir("sst2")
    overrides = ["experiment=sst2_minilm_lora", "peft=qlora", f"dataset.data_dir={data_dir}"]
    result = fit(compose_config(overrides, output_dir=tmp_path))
    report = json.loads((tmp_path / "metrics.json").read_text())
    print(
        f"\nQLoRA SST-2 dev accuracy {report['best']['val/accuracy']:.4f} "
        f"(rows {report['train_samples'] // report['epochs']}, epochs {report['epochs']}, "
        f"train {report['train_time_s']:.0f} s, {report['samples_per_s']:.1f} samples/s, "
        f"base {report['base_memory']['loaded_mb']} MiB 4-bit vs {report['base_memory']['full_precision_mb']} MiB)"
    )
    assert (
        type(result.module.model.base_model.model.bert.encoder.layer[0].attention.self.query.base_layer).__name__
        == "Linear4bit"
    )
    assert report["best"]["val/accuracy"] >= 0.83
