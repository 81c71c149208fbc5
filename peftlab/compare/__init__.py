"""A fair method comparison: every method at its own tuned learning rate, with seeds, judged on a held-out test split.

    python -m peftlab.compare model=minilm dataset=emotion dataset.data_dir=<folder> \
        'compare.methods=[lora,dora,ia3,prefix,adapters,full,head_only]'

1. tune: per method, the same number of learning rates (a log grid over its YAML's `lr_range`) on one fixed subset
   and step budget (compare.tune); the best validation metric picks the rate (<out>/chosen_lr.json). While the best
   is at an end of what was tried and beats its neighbour, one more rate a grid step past that end is tried, up to
   compare.tune.extend times (tune_ext<k>/<method>/): a range set too narrow does not decide the winner.
2. confirm: that rate with compare.confirm.seeds (>= 3) at the full budget, validating every N steps; with
   compare.default_arm, the YAML's default rate too (same seeds and budget): what tuning changed.
3. test: at each budget (10/25/50/100 % of the largest run's FLOPs and seconds) every confirmed run's best
   validation checkpoint within it is scored on the held-out test split, read here for the first time.
Then the report (<out>/summary.md, report.html): the best method per budget on test with 95 % t intervals over
seeds, or "no clear winner".

Why a command of its own and not `python -m peftlab.train -m experiment=...`: a Hydra sweep fixes its jobs before
the first one runs, and confirm's learning rates come out of tune's results (the Optuna sweeper too ends with its
best trial; it cannot start the next stage). So this module chains three stages of ordinary
`python -m peftlab.train -m` sweeps (any launcher), run by the installed package from the folder the command starts
in, which need not be a checkout.
"""

from peftlab.lazy import forwarded

__all__ = ["run_protocol", "write_chosen", "write_compare_report"]
__getattr__ = forwarded(__name__, "peftlab.compare.protocol", tuple(__all__))
