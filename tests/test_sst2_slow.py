"""Slow, real data: MiniLM + LoRA on SST-2 (../shared/data/sst2) reaches >= 85 % dev accuracy on 2 CPU cores."""

import json

import pytest
from conftest import compose_config, shared_split_dir

from peftlab.run import fit


@pytest.mark.slow
def test_minilm_lora_sst2_dev_accuracy(tmp_path):
    data_dir = shared_split_dir("sst2")
    result = fit(compose_config(["experiment=sst2_minilm_lora", f"dataset.data_dir={data_dir}"], output_dir=tmp_path))
    report = json.loads((tmp_path / "metrics.json").read_text())
    print(  # the figures the closing note quotes: pytest -m slow -s
        f"\nSST-2 dev accuracy {report['best']['val/accuracy']:.4f} "
        f"(rows {report['train_samples'] // report['epochs']}, epochs {report['epochs']}, "
        f"train {report['train_time_s']:.0f} s, {report['samples_per_s']:.1f} samples/s)"
    )
    assert len(result.datamodule.val_dataset) == 872  # the whole GLUE dev split
    assert report["best"]["val/accuracy"] >= 0.85
