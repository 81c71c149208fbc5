"""Preference tuning (modules/preference.py): DPO, IPO and ORPO losses on known numbers, the reference as the base
with the adapter disabled, answer log-probabilities over answer tokens only, the collated pairs, refusals in one
line, and a DPO fit on the tiny SmolLM2 twin whose rewards separate."""

import math
from functools import partial

import pytest
import torch
from conftest import compose_config, option_names

from peftlab.config import validate
from peftlab.data.collators import PreferenceCollator
from peftlab.data.encoders import IGNORE_INDEX, PreferenceRows
from peftlab.errors import ConfigError
from peftlab.models.loading import load_base_model, load_tokenizer
from peftlab.models.method_hooks import after_optimizer_step, build_optimizer
from peftlab.models.methods import apply_method, load_kwargs_for
from peftlab.modules import build_module
from peftlab.modules.preference import answer_logps, both_answers, preference_loss
from peftlab.run import fit

POLICY = {"chosen": torch.tensor([-10.0, -20.0]), "rejected": torch.tensor([-12.0, -15.0]),
          "chosen_n": torch.tensor([5, 4]), "rejected_n": torch.tensor([4, 5])}  # fmt: skip
REFERENCE = {"chosen": torch.tensor([-11.0, -19.0]), "rejected": torch.tensor([-11.0, -16.0]),
             "chosen_n": torch.tensor([5, 4]), "rejected_n": torch.tensor([4, 5])}  # fmt: skip


def _log_sigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x))


def test_dpo_and_cdpo_losses_on_known_log_probabilities():
    # pair 0: h = (-10 + 12) - (-11 + 11) = 2; pair 1: h = (-20 + 15) - (-19 + 16) = -2
    out = preference_loss("dpo", 0.5, 0.0, POLICY, REFERENCE)
    assert out["loss"].tolist() == pytest.approx([-_log_sigmoid(1.0), -_log_sigmoid(-1.0)])
    assert out["chosen_reward"].tolist() == pytest.approx([0.5, -0.5])  # beta * (policy - reference), chosen
    assert out["rejected_reward"].tolist() == pytest.approx([-0.5, 0.5])
    smoothed = preference_loss("dpo", 0.5, 0.2, POLICY, REFERENCE)["loss"]
    assert smoothed.tolist() == pytest.approx(
        [-0.8 * _log_sigmoid(1.0) - 0.2 * _log_sigmoid(-1.0), -0.8 * _log_sigmoid(-1.0) - 0.2 * _log_sigmoid(1.0)]
    )


def test_the_sft_weight_adds_the_chosen_answers_mean_nll_and_orpo_refuses_it(tmp_path):
    plain = preference_loss("dpo", 0.5, 0.0, POLICY, REFERENCE)["loss"]
    rpo = preference_loss("dpo", 0.5, 0.0, POLICY, REFERENCE, sft_weight=0.5)["loss"]
    assert (rpo - plain).tolist() == pytest.approx([0.5 * 10 / 5, 0.5 * 20 / 4])
    overrides = ["model=smollm2_tiny", "dataset=detox_pref", "dataset.data_dir=unused", "objective=orpo",
                 "objective.sft_weight=1.0"]  # fmt: skip
    with pytest.raises(ConfigError, match=r"objective.sft_weight=1.0: 0 for objective=orpo"):
        validate(compose_config(overrides, output_dir=tmp_path), check_files=False)


def test_ipo_loss_uses_per_token_means_and_a_margin_of_one_over_two_beta():
    h0 = (-10 / 5 - -12 / 4) - (-11 / 5 - -11 / 4)
    h1 = (-20 / 4 - -15 / 5) - (-19 / 4 - -16 / 5)
    loss = preference_loss("ipo", 0.25, 0.0, POLICY, REFERENCE)["loss"]
    assert loss.tolist() == pytest.approx([(h0 - 2.0) ** 2, (h1 - 2.0) ** 2])


def test_orpo_loss_is_the_chosen_nll_plus_the_odds_ratio_term_without_a_reference():
    c, r = -10 / 5, -12 / 4  # per-token mean log-probs of pair 0
    log_odds = (c - r) - (math.log1p(-math.exp(c)) - math.log1p(-math.exp(r)))
    out = preference_loss("orpo", 0.1, 0.0, POLICY, None)
    assert out["loss"][0].item() == pytest.approx(-c - 0.1 * _log_sigmoid(log_odds))
    assert out["chosen_reward"][0].item() == pytest.approx(0.1 * c)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny SmolLM2 twin with LoRA (its B moved off zero, so the adapter changes the output), the real
    SmolLM2 tokenizer and the settings of dataset=detox_pref."""
    out = tmp_path_factory.mktemp("pref")
    overrides = ["model=smollm2_tiny", "dataset=detox_pref", "dataset.data_dir=unused", "objective=dpo"]
    settings = validate(compose_config(overrides, output_dir=out), check_files=False)
    base = load_base_model(settings.model, settings.shape, [])
    torch.manual_seed(0)
    model = apply_method(base, settings.peft, settings.model.head_modules, settings.shape).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)
    return model, load_tokenizer(settings.model), settings


def _pairs(tokenizer, settings) -> dict:
    rows = {"en_toxic_comment": ["you are a total idiot", "this crap is stupid and so are you"],
            "en_neutral_comment": ["you are wrong", "this is not good"]}  # fmt: skip
    encoded = PreferenceRows(tokenizer, settings.dataset)(rows)
    features = [{k: v[i] for k, v in encoded.items()} for i in range(2)]
    return PreferenceCollator(tokenizer)(features), encoded


def test_pairs_share_the_prompt_and_only_answer_tokens_carry_labels(tiny):
    _, tokenizer, settings = tiny
    batch, encoded = _pairs(tokenizer, settings)
    for i in range(2):
        prompt = encoded["prompt_length"][i]
        chosen, rejected = encoded["input_ids"][i], encoded["rejected_input_ids"][i]
        assert chosen[:prompt] == rejected[:prompt]  # one prompt, two answers
        for ids, labels in ((chosen, encoded["labels"][i]), (rejected, encoded["rejected_labels"][i])):
            assert labels[:prompt] == [IGNORE_INDEX] * prompt and labels[prompt:] == ids[prompt:]
            assert ids[-1] == tokenizer.eos_token_id
        answer = tokenizer.decode(encoded["rejected_labels"][i][prompt:], skip_special_tokens=True)
        assert answer.strip() == ["you are a total idiot", "this crap is stupid and so are you"][i]
    width = batch["input_ids"].shape[1]
    assert batch["rejected_input_ids"].shape == (2, width)  # chosen and rejected padded to one width
    assert (batch["rejected_labels"][batch["rejected_attention_mask"] == 0] == IGNORE_INDEX).all()


def test_answer_log_probabilities_sum_over_answer_tokens_only(tiny):
    model, tokenizer, settings = tiny
    batch, _ = _pairs(tokenizer, settings)
    both = both_answers(batch)
    sums, counts = answer_logps(model, both)
    logits = model(input_ids=both["input_ids"], attention_mask=both["attention_mask"]).logits.float()
    logps = torch.log_softmax(logits[:, :-1], -1)
    for row in range(4):
        targets = both["labels"][row, 1:]
        learnt = (targets != IGNORE_INDEX).nonzero().flatten()
        expected = sum(logps[row, t, targets[t]] for t in learnt)
        assert counts[row] == len(learnt) and sums[row].item() == pytest.approx(expected.item(), rel=1e-5)
    padded = {
        k: torch.nn.functional.pad(v, (0, 3), value=0 if k != "labels" else IGNORE_INDEX) for k, v in both.items()
    }  # fmt: skip  (more padding changes nothing)
    assert torch.allclose(answer_logps(model, padded)[0], sums, atol=1e-5)


def test_the_reference_is_the_base_with_the_adapter_disabled(tiny, tmp_path):
    model, tokenizer, settings = tiny
    batch, _ = _pairs(tokenizer, settings)
    base = load_base_model(settings.model, settings.shape, []).eval()
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask")}
    with torch.no_grad():
        adapted = model(**inputs).logits
        with model.disable_adapter():
            disabled = model(**inputs).logits
        plain = base(**inputs).logits
    assert not torch.allclose(adapted, plain)  # the adapter does change the output ...
    assert torch.equal(disabled, plain)  # ... and disabled, the model is the base, bit for bit


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["dataset=detox_pref"], "objective=sft: dataset=detox_pref holds preference pairs"),
        (["dataset=detox", "objective=dpo"], "objective=dpo: needs a preference dataset"),
        (["dataset=detox_pref", "objective=ipo", "peft=full"], "objective=ipo with peft=full: the reference model"),
        (["dataset=detox_pref", "objective=dpo", "model=minilm"], "preference needs a causal model"),
        (["dataset=detox_pref", "objective=orpo", "objective.label_smoothing=0.1"], "label_smoothing=0.1: is DPO's"),
    ],
)
def test_refusals_name_the_key_in_one_line(overrides, message):
    cfg = compose_config(["model=smollm2_tiny", "dataset.data_dir=unused", *overrides])
    with pytest.raises(ConfigError, match=message) as err:
        validate(cfg, check_files=False)
    assert "\n" not in str(err.value)


def test_orpo_trains_full_fine_tuning_with_no_reference(tmp_path, write_jsonl):
    """ORPO needs no adapter to disable: peft=full is accepted and its loss falls."""
    data = write_jsonl(ROWS * 4, ROWS)
    cfg = compose_config([*TINY_RUN, f"dataset.data_dir={data}", "objective=orpo", "peft=full", "peft.lr=1e-3"],
                         output_dir=tmp_path)  # fmt: skip
    history = fit(cfg).report["history"]
    assert history[-1]["val/loss"] < history[0]["val/loss"]


ROWS = [{"en_toxic_comment": t, "en_neutral_comment": n} for t, n in [
    ("you are a total idiot", "you are wrong"), ("this crap is stupid", "this is not good"),
    ("shut up you moron", "please stop"), ("what a dumb idea", "what an odd idea"),
]]  # fmt: skip
TINY_RUN = ["model=smollm2_tiny", "dataset=detox_pref", "dataset.batch_size=4", "dataset.max_eval_generate_rows=2",
            "trainer.max_steps=12", "trainer.val_check_interval=4", "dataset.group_by_length=false"]  # fmt: skip


def test_dpo_fit_separates_the_rewards_and_leaves_the_base_untouched(tmp_path, write_jsonl):
    data = write_jsonl(ROWS * 4, ROWS)
    cfg = compose_config([*TINY_RUN, f"dataset.data_dir={data}", "objective=dpo", "peft.lr=1e-2"], output_dir=tmp_path)
    result = fit(cfg)
    history = result.report["history"]
    first, last = history[0], history[-1]
    assert last["val/loss"] < first["val/loss"] < math.log(2) + 0.05  # starts at log 2: policy = reference
    assert last["val/rewards/margin"] > first["val/rewards/margin"] and last["val/rewards/accuracy"] == 1.0
    for key in ("val/logps/chosen", "val/logps/rejected", "val/rewards/chosen", "val/bleu"):
        assert key in last, key
    module = result.module
    assert module.reference_cache  # every row's reference computed once, then read back
    pairs = PreferenceRows(module.tokenizer, result.settings.dataset)({k: [r[k] for r in ROWS * 4] for k in ROWS[0]})
    epoch_tokens = sum(len(c) + len(r) for c, r in zip(pairs["input_ids"], pairs["rejected_input_ids"], strict=True))
    assert result.report["train_tokens"] == 3 * epoch_tokens  # 12 steps of 4 = 3 epochs; both answers trained on
    base = load_base_model(result.settings.model, result.settings.shape, [])
    trained = module.model.get_base_model().state_dict()
    for name, value in base.state_dict().items():  # the base: bit-identical after training
        key = next(k for k in trained if k.replace(".base_layer", "") == name)
        assert torch.equal(trained[key], value), name
    # Served like any causal adapter: the toxic sentence in, a rewrite generated from detox's prompt
    from peftlab.serve.registry import AdapterServer

    server = AdapterServer()
    server.add_adapter("dpo", tmp_path)
    answer = server.predict("dpo", "you are a total idiot")
    assert set(answer) == {"answer"} and isinstance(answer["answer"], str)


METHODS = [m for m in option_names("peft") if m != "none"]


@pytest.mark.parametrize("method", METHODS)
def test_every_method_trains_a_preference_objective_or_refuses_in_one_line(method, tiny, tmp_path):
    """The methods x objective column (docs/methods.md): DPO where the method has a peft adapter to disable, else
    ORPO (no reference); a few full-batch steps on two pairs raise the reward margin, and the frozen base stays."""
    overrides = ["model=smollm2_tiny", "dataset=detox_pref", "dataset.data_dir=unused", f"peft={method}"]
    try:
        settings = validate(compose_config([*overrides, "objective=dpo"], output_dir=tmp_path), check_files=False)
    except ConfigError as err:
        if "the reference model is the base with the adapter disabled" not in str(err):
            assert method == "head_only" and "no new head to train" in str(err), err
            return
        settings = validate(compose_config([*overrides, "objective=orpo"], output_dir=tmp_path), check_files=False)
    tokenizer = tiny[1]  # the twin's real SmolLM2 tokenizer, read once
    head = []  # a decoder's LM head is its tied embedding: frozen, and kept out of 4-bit (as run/setup.py does)
    torch.manual_seed(0)
    base = load_base_model(settings.model, settings.shape, [], **load_kwargs_for(settings.peft, head))
    model = apply_method(base, settings.peft, head, settings.shape)
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    module = build_module(settings.shape, settings.dataset, model, tokenizer, objective=settings.objective)
    batch, _ = _pairs(tokenizer, settings)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = build_optimizer(model, partial(torch.optim.AdamW, lr=LEARNING_RATES.get(method, 1e-2)),
                                [{"params": trainable}], 8)  # fmt: skip
    margins = []
    for step in range(8):
        loss = module.loss(batch)
        margins.append(module.stats["rewards/margin"].item())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        after_optimizer_step(model, step)
    assert math.isfinite(loss.item()) and max(margins[1:]) > margins[0], margins
    for name, param in model.named_parameters():
        if name in frozen:
            assert torch.equal(param, frozen[name]), name


LEARNING_RATES = {"full": 1e-4, "loraplus": 2e-3}  # others 1e-2 (as the methods matrix)
