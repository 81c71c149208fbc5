"""run.forgetting: a run's loss on text its task never saw, with its adapter and with the base alone."""

import pytest
from conftest import compose_config
from serve_runs import TINY, write_sql_data

from peftlab.errors import ConfigError
from peftlab.run import fit, forgetting
from peftlab.rundir import RunDir

GENERAL_TEXT = [  # no SQL: what the sample stands for is text the task does not train on
    "The river rose overnight and the village moved its boats to higher ground.",
    "She kept the letters in a tin box under the stairs for forty years.",
    "A cold front will bring rain to the coast by Thursday afternoon.",
]


@pytest.fixture(scope="module")
def sql_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("forgetting")
    sql = write_sql_data(root / "sql_data")
    args = [*TINY, "model=gpt2_tiny", "dataset=sql", f"dataset.data_dir={sql}", "peft.lr=3e-2"]
    fit(compose_config(args, output_dir=root / "run"))
    return RunDir(root / "run")


def test_forgetting_is_the_change_of_loss_on_general_text(sql_run):
    found = forgetting(sql_run.read_config(), GENERAL_TEXT, str(sql_run.adapter))
    assert found["forgetting"] == pytest.approx(found["loss"] - found["base_loss"])
    assert found["forgetting"] != 0  # the adapter moved the model, on text it never saw too
    again = forgetting(sql_run.read_config(), GENERAL_TEXT, str(sql_run.adapter))
    assert again == found  # the same sample, the same numbers


def test_an_untrained_adapter_forgets_nothing(tmp_path):
    sql = write_sql_data(tmp_path / "sql_data")
    args = [*TINY, "model=gpt2_tiny", "dataset=sql", f"dataset.data_dir={sql}", "peft.lr=1e-12"]
    fit(compose_config(args, output_dir=tmp_path / "run"))  # LoRA's B starts at zero and barely moves
    run = RunDir(tmp_path / "run")
    found = forgetting(run.read_config(), GENERAL_TEXT, str(run.adapter))
    assert found["forgetting"] == pytest.approx(0.0, abs=1e-6)


def test_encoders_are_refused_in_one_line(tmp_path):
    cfg = compose_config(["model=minilm"], output_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"^model=minilm: forgetting is measured on causal language models only$"):
        forgetting(cfg, GENERAL_TEXT, str(tmp_path))


def test_a_comparison_measures_each_run_once_and_reports_the_mean_per_method(sql_run, tmp_path, monkeypatch):
    import peftlab.run as run_stage
    from peftlab.compare.costs import cost_table
    from peftlab.compare.forgetting import measure_forgetting, read_forgetting
    from peftlab.report.collect import load_run

    record = load_run(sql_run.root)
    rows = measure_forgetting(tmp_path, [record], GENERAL_TEXT)
    assert [r["run"] for r in rows] == [str(sql_run.root)] and rows == read_forgetting(tmp_path)
    monkeypatch.setattr(run_stage, "forgetting", lambda *args: pytest.fail("measured twice"))
    assert measure_forgetting(tmp_path, [record], GENERAL_TEXT) == rows  # a rerun reads forgetting.json
    costs = {"lora": {"trainable": 10, "adapter_mb": 0.5, "peak_rss_mb": 900.0, "train_flops": 1e12, "train_s": 60.0,
                      "score": 0.8, "forgetting": rows[0]["forgetting"]}}  # fmt: skip
    table = cost_table(costs, "test/rougeL")
    assert table.header[-1] == "forgetting: loss change on general text (nats/token)"
    assert table.rows[0][-1] == f"{rows[0]['forgetting']:+.4f}"


def test_the_sample_and_the_model_are_checked_before_anything_runs(tmp_path, write_jsonl):
    from conftest import CONF
    from hydra import compose, initialize_config_dir

    from peftlab.compare.forgetting import read_texts
    from peftlab.compare.plan import make_plan

    folder = write_jsonl([{"text": line} for line in GENERAL_TEXT])
    assert read_texts(folder / "train.jsonl", "text", 2) == GENERAL_TEXT[:2]
    with pytest.raises(ConfigError, match=r"^compare.forgetting.texts=/no/such.jsonl: no such file"):
        read_texts("/no/such.jsonl", "text", 2)
    with pytest.raises(ConfigError, match=r"^compare.forgetting.column=body: not in .* \(line 1 has \['text'\]\)$"):
        read_texts(folder / "train.jsonl", "body", 2)
    overrides = [f"compare.forgetting.texts={folder / 'train.jsonl'}", "compare.methods=[lora]"]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("compare", overrides=overrides)
        with pytest.raises(ConfigError, match=r"^compare.forgetting.texts: forgetting is measured on causal langu"):
            make_plan(cfg, overrides, tmp_path)
