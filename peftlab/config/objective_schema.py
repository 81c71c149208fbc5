"""Schema of the objective group (conf/objective/): the task's own loss, or a preference objective on (prompt,
chosen, rejected) rows. One group, so `objective=dpo,ipo,orpo` is a sweep like any other."""

from dataclasses import dataclass

from peftlab.config.checks import check, check_choice

# sft: the task's own loss (cross-entropy on the targets); the others need dataset.task=preference
OBJECTIVES = ("sft", "dpo", "ipo", "orpo")
PREFERENCE_OBJECTIVES = OBJECTIVES[1:]
# DPO and IPO compare the policy with a reference: the same base with the adapter disabled (no second copy)
REFERENCE_OBJECTIVES = ("dpo", "ipo")


@dataclass
class ObjectiveSettings:
    name: str = "sft"
    # dpo/ipo: the KL strength (DPO's beta; IPO's tau = beta); orpo: lambda, the odds-ratio term's weight
    beta: float = 0.1
    # dpo: the assumed share of flipped preferences (conservative DPO, cDPO), in [0, 0.5)
    label_smoothing: float = 0.0
    # dpo/ipo: each row's reference log-probabilities are computed once (the first time the row is seen, the
    # model in eval mode) and kept: later epochs and validations skip the reference forward pass
    cache_reference: bool = True
    # dpo/ipo: weight of the chosen answer's mean NLL added to the loss (RPO, Pang et al. 2024; TRL's rpo_alpha,
    # LLaMA-Factory's pref_ftx). DPO alone may lower both answers' likelihood while it widens their margin, until
    # generation breaks; the NLL term holds the chosen answer up. 0: plain DPO/IPO.
    sft_weight: float = 0.0

    def __post_init__(self) -> None:
        check_choice("name", self.name, OBJECTIVES)
        check(self.beta > 0, "beta", self.beta, "must be > 0")
        check(0.0 <= self.label_smoothing < 0.5, "label_smoothing", self.label_smoothing, "must be in [0, 0.5)")
        check(self.name == "dpo" or self.label_smoothing == 0.0, "label_smoothing", self.label_smoothing,
              "is DPO's (cDPO); 0 for objective=" + self.name)  # fmt: skip
        check(self.sft_weight >= 0.0, "sft_weight", self.sft_weight, "must be >= 0")
        check(self.name != "orpo" or self.sft_weight == 0.0, "sft_weight", self.sft_weight,
              "0 for objective=orpo (its loss holds the chosen answer's NLL already)")  # fmt: skip
