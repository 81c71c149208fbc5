"""python -m peftlab.export: a merged model scores like base + adapter and loads without peft; QLoRA; adapter-only."""

import json
import re
import shutil
import subprocess
import sys

import forked_commands
import pytest
import torch
import transformers
from conftest import CONF, compose_config, eval_config
from hydra import compose, initialize_config_dir
from safetensors import safe_open

from peftlab.cli import run_command
from peftlab.errors import ConfigError
from peftlab.export import NOT_MERGEABLE_MESSAGE, export_run
from peftlab.export.__main__ import export
from peftlab.models.loading import load_base_model
from peftlab.models.methods import load_trained
from peftlab.run import fit
from peftlab.run.evaluation import evaluate

# Tiny runs: a few steps at a high learning rate, so the adapter moves the weights well beyond the tolerance.
TINY = ["dataset.max_train_rows=96", "dataset.max_eval_rows=32", "trainer.max_epochs=1", "peft.lr=3e-2"]
# float32: merged W' = W + s·B·A (or l ⊙ W) is the same sum as x·W + s·(x·A)·B taken in another order, so only
# rounding differs: measured 1.8e-7 to 3.6e-7 on these twins' logits; 1e-5 leaves a margin of more than 25x.
LOGIT_ATOL = 1e-5
# bfloat16 keeps 8 bits of mantissa: each saved weight is within ~0.4 % of the float32 merge (measured logits: 3e-3).
BF16_ATOL = 5e-2
# QLoRA: merged into the 4-bit base de-quantised to float32, i.e. the weights the 4-bit layers compute with, so the
# merged model is the trained model up to summation order: measured 3e-8 on MiniLM's probe logits. Tolerances: 1e-4
# on logits; one validation row of 200 (0.005) for a prediction on a near-tie flipping by that rounding.
QLORA_LOGIT_TOL = 1e-4
QLORA_METRIC_TOL = 0.005
QLORA_DATA = ["dataset.max_train_rows=640", "dataset.max_eval_rows=200", "dataset.batch_size=16"]

MERGEABLE = [
    ("gpt2_tiny", "lora"),
    ("gpt2_tiny", "ia3"),
    ("deberta_v3_tiny", "lora"),
    ("deberta_v3_tiny", "ia3"),
]

NO_PEFT_SCRIPT = """
import json, sys
if sys.argv[2] == "hide":  # as if peft were not installed: `import peft` fails, find_spec("peft") is None
    sys.modules["peft"] = None
import torch, transformers
model = transformers.AutoModelForSequenceClassification.from_pretrained(sys.argv[1]).eval()
tokenizer = transformers.AutoTokenizer.from_pretrained(sys.argv[1])
with torch.no_grad():
    logits = model(**tokenizer(["a sentence to classify"], return_tensors="pt")).logits
loaded = sorted(m for m, v in sys.modules.items() if v is not None and (m == "peft" or m.startswith("peft.")))
print(json.dumps({"peft_modules": loaded, "logits": logits.tolist()}))
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(family, method, *overrides) -> the fit result of that tiny run; each run trains once per module."""
    runs = {}

    def _train(family: str, method: str, *overrides: str):
        key = (family, method, *overrides)
        if key not in runs:
            out = tmp_path_factory.mktemp(f"{family}-{method}")
            runs[key] = fit(compose_config([f"model={family}", f"peft={method}", *TINY, *overrides], output_dir=out))
        return runs[key]

    return _train


def export_cli(*overrides: str):
    """`python -m peftlab.export <overrides>` in this process: conf/export.yaml composed, then run_command."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("export", overrides=list(overrides))
    return run_command(export, cfg)


def user_error(*overrides: str) -> int:
    """The exit code of an export command line that fails with a user error (run_command's SystemExit)."""
    with pytest.raises(SystemExit) as exited:
        export_cli(*overrides)
    return exited.value.code


def validation_batch(result, rows: int = 16) -> dict:
    batch = result.datamodule.collator([result.datamodule.val_dataset[i] for i in range(rows)])
    batch.pop("labels")
    return batch


def plain_base(result) -> torch.nn.Module:
    settings = result.settings
    labels = list(settings.dataset.labels)
    return load_base_model(settings.model, settings.shape, labels, result.tokenizer.pad_token_id).eval()


def base_plus_adapter(result) -> torch.nn.Module:
    return load_trained(plain_base(result), result.settings.peft, result.output_dir / "adapter").eval()


def peft_modules_after_loading(folder, mode: str) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", NO_PEFT_SCRIPT, str(folder), mode], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(("family", "method"), MERGEABLE)
def test_merged_model_gives_the_logits_of_base_plus_adapter(family, method, trained, tmp_path):
    result = trained(family, method)
    exported = export_run(result.output_dir, tmp_path / "merged", merge=True)
    out = exported.out
    assert exported.merged and exported.dtype == "float32"
    assert {"model.safetensors", "config.json", "tokenizer.json", "README.md"} <= {p.name for p in out.iterdir()}
    assert not (out / "adapter_config.json").exists()

    merged = transformers.AutoModelForSequenceClassification.from_pretrained(out).eval()
    assert not any("lora_" in n or "ia3_" in n or "modules_to_save" in n for n, _ in merged.named_parameters())
    batch = validation_batch(result)
    with torch.no_grad():
        expected = base_plus_adapter(result)(**batch).logits
        got = merged(**batch).logits
    diff = (got - expected).abs().max().item()
    print(f"\n{family} + {method}: max |logit diff| merged vs base + adapter {diff:.2e} (tolerance {LOGIT_ATOL})")
    assert diff < LOGIT_ATOL
    assert exported.max_logit_diff < LOGIT_ATOL

    # The check means something: the adapter moved every targeted weight away from the base's.
    targets = json.loads((result.output_dir / "adapter" / "adapter_config.json").read_text())["target_modules"]
    base_weights = plain_base(result).state_dict()
    changed = [
        name
        for name, weight in merged.state_dict().items()
        if name.endswith(".weight") and not torch.equal(weight, base_weights[name])
    ]
    for target in targets:
        assert any(f".{target}.weight" in name for name in changed), (target, changed)

    # Loading and running it needs no peft: not imported when installed, not needed when absent.
    seen = peft_modules_after_loading(out, "plain")
    assert seen["peft_modules"] == []
    if family == "gpt2_tiny" and method == "lora":
        hidden = peft_modules_after_loading(out, "hide")
        assert hidden["logits"][0] == pytest.approx(seen["logits"][0], abs=1e-6)


def test_bfloat16_export_stores_bfloat16_weights_close_to_float32(trained, tmp_path):
    result = trained("gpt2_tiny", "lora")
    exported = export_run(result.output_dir, tmp_path / "bf16", merge=True, dtype="bfloat16")
    with safe_open(str(exported.out / "model.safetensors"), "pt") as weights:
        dtypes = {weights.get_slice(k).get_dtype() for k in weights.keys()}  # noqa: SIM118 (safe_open has no __iter__)
    assert dtypes == {"BF16"}
    merged = transformers.AutoModelForSequenceClassification.from_pretrained(exported.out).eval()
    batch = validation_batch(result)
    with torch.no_grad():
        diff = (merged(**batch).logits.float() - base_plus_adapter(result)(**batch).logits).abs().max().item()
    print(f"\nbfloat16 export: max |logit diff| {diff:.2e} (tolerance {BF16_ATOL})")
    assert LOGIT_ATOL < diff < BF16_ATOL  # rounded, but close
    assert "saved as bfloat16" in (exported.out / "README.md").read_text()


def test_whole_model_runs_export_as_the_plain_model_they_saved(trained, tmp_path):
    result = trained("gpt2_tiny", "head_only")
    exported = export_run(result.output_dir, tmp_path / "whole", merge=True)
    assert exported.merged and exported.max_logit_diff is None
    merged = transformers.AutoModelForSequenceClassification.from_pretrained(exported.out).eval()
    batch = validation_batch(result)
    with torch.no_grad():
        assert torch.equal(merged(**batch).logits, base_plus_adapter(result)(**batch).logits)
    assert "library_name: transformers" in (exported.out / "README.md").read_text()


def test_adapter_only_export_copies_the_adapter_with_a_model_card(trained, tmp_path):
    result = trained("deberta_v3_tiny", "lora")
    exported = export_run(result.output_dir, tmp_path / "adapter-only", merge=False)
    adapter = result.output_dir / "adapter"
    assert not exported.merged and exported.max_logit_diff is None
    for name in ("adapter_config.json", "adapter_model.safetensors", "tokenizer.json"):
        assert (exported.out / name).read_bytes() == (adapter / name).read_bytes()
    assert exported.out_bytes < 2 * exported.adapter_bytes  # no base weights in it

    card = (exported.out / "README.md").read_text()
    best = json.loads((result.output_dir / "metrics.json").read_text())["best"]
    assert card.startswith("---\nlibrary_name: peft\n")
    assert "pipeline_tag: text-classification" in card and "  - lora" in card
    assert f"| val/accuracy | {best['val/accuracy']:.4f} |" in card
    assert f"| `peft.r` | `{result.settings.peft.r}` |" in card
    assert "PeftModel.from_pretrained(base" in card and "num_labels=2" in card
    snippet = {}
    exec(re.search(r"```python\n(.*?)```", card, re.S).group(1), snippet)  # the card's "How to load" runs as written
    batch = validation_batch(result)
    with torch.no_grad():
        assert torch.equal(snippet["model"].eval()(**batch).logits, base_plus_adapter(result)(**batch).logits)


@pytest.mark.parametrize(("family", "method"), [("gpt2_tiny", "prefix"), ("gpt2_tiny", "adapters")])
def test_unmergeable_methods_say_so_and_export_the_adapter(family, method, trained, tmp_path, capsys):
    result = trained(family, method)
    out = tmp_path / "export"
    assert export_cli(f"run={result.output_dir}", "merge=true", f"out={out}").out == out
    message = NOT_MERGEABLE_MESSAGE.format(method=method, why=result.settings.peft.capabilities.not_mergeable)
    printed = capsys.readouterr()
    assert f"exported the {method} adapter to {out}" in printed.out
    adapter = result.output_dir / "adapter"
    assert {p.name for p in adapter.iterdir()} - {"README.md"} == {p.name for p in out.iterdir()} - {"README.md"}
    assert message in (out / "README.md").read_text()
    exported = export_run(result.output_dir, tmp_path / "again", merge=True)
    assert not exported.merged and exported.message == message


def test_qlora_merges_into_the_dequantised_base_and_scores_as_the_4bit_adapter(tmp_path):
    run = tmp_path / "run"
    fit(compose_config(["model=minilm", "peft=qlora", "trainer.max_epochs=1", "peft.lr=2e-3", *QLORA_DATA], run))
    exported = export_run(run, tmp_path / "merged", merge=True)
    config = json.loads((exported.out / "config.json").read_text())
    assert "quantization_config" not in config and config["dtype"] == "float32"
    merged = transformers.AutoModelForSequenceClassification.from_pretrained(exported.out)
    assert {p.dtype for p in merged.parameters()} == {torch.float32}
    assert all(type(m).__module__.startswith(("torch", "transformers")) for m in merged.modules())  # no Linear4bit
    assert "4-bit NF4 base; merged into that base de-quantised to float32" in (exported.out / "README.md").read_text()

    data = ["model=minilm", *QLORA_DATA]
    (adapter_row,) = evaluate(eval_config([f"adapter={run}", *data], tmp_path / "eval-adapter"))
    merged_overrides = [*data, f"model.name_or_path={exported.out}", "peft=none"]
    (merged_row,) = evaluate(eval_config(merged_overrides, tmp_path / "eval-merged"))
    gap = abs(merged_row["val/accuracy"] - adapter_row["val/accuracy"])
    print(
        f"\nQLoRA: 4-bit adapter val/accuracy {adapter_row['val/accuracy']:.4f}, merged float32 "
        f"{merged_row['val/accuracy']:.4f} (gap {gap:.4f}, tolerance {QLORA_METRIC_TOL}); logits vs the 4-bit "
        f"model: max diff {exported.trained_as_logit_diff:.3g}"
    )
    assert adapter_row["val/accuracy"] > 0.7  # the adapter learned something, so the comparison is not chance vs chance
    assert gap <= QLORA_METRIC_TOL
    assert exported.trained_as_logit_diff < QLORA_LOGIT_TOL


def test_cli_names_the_allowed_keys_and_refuses_a_non_empty_folder(trained, tmp_path, capsys):
    # A key export does not have is Hydra's to refuse, in one line (exit 2, as train.py); --help lists the keys.
    cli = [sys.executable, "-m", "peftlab.export"]
    bad = forked_commands.run([*cli, "run=x", "merged=true", "out=y"], cwd=tmp_path, timeout=300)
    said = bad.stderr.strip().splitlines()[-1]
    assert bad.returncode == 2 and said == "error: merged: unknown key (add one with +merged=...)"
    assert "Traceback" not in bad.stderr
    usage = forked_commands.run([*cli, "--help"], cwd=tmp_path, timeout=300)
    keys = r"run: \?\?\?\nout: \?\?\?\nmerge: true\nformat: hf\ndtype: float32"
    assert usage.returncode == 0 and re.search(keys, usage.stdout)
    assert list(tmp_path.iterdir()) == []  # no outputs/ or .hydra/: the export is `out` alone
    capsys.readouterr()
    assert user_error("run=x", "merge=maybe", "out=y") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err == "error: merge=maybe: true or false"
    assert user_error("out=y") == 2
    assert capsys.readouterr().err.startswith("error: run= is required (python -m peftlab.export run=<run folder>")

    result = trained("gpt2_tiny", "lora")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("mine")
    assert user_error(f"run={result.output_dir}", f"out={tmp_path / 'busy'}") == 2
    assert "exists and is not an empty folder" in capsys.readouterr().err
    assert (tmp_path / "busy" / "keep.txt").read_text() == "mine"
    with pytest.raises(ConfigError, match="dtype=int8: allowed are float32, bfloat16, float16"):
        export_run(result.output_dir, tmp_path / "x", dtype="int8")
    bare = shutil.copytree(result.output_dir / "adapter", tmp_path / "bare")  # an adapter without its run folder
    with pytest.raises(ConfigError, match=r"no config\.yaml beside"):
        export_run(bare, tmp_path / "x")

    assert export_cli(f"run={result.output_dir}", "merge=true", f"out={tmp_path / 'cli'}").merged
    printed = capsys.readouterr().out
    assert "exported the merged lora model (float32)" in printed and "size on disk:" in printed
