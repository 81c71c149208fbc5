"""`python -m peftlab.cost`: hours and on-demand/spot cost per instance type for a planned number of steps.

    python -m peftlab.cost --steps 56850 ml.p3.2xlarge=0.20 ml.g4dn.xlarge=0.35   # seconds/step per instance type
    python -m peftlab.cost outputs/<date>/<time> --epochs 3 ml.g4dn.xlarge         # s/step measured by that run
"""

import argparse
import sys

from peftlab.cloud.cost import estimate, format_table, load_prices, measured_seconds_per_step
from peftlab.errors import PeftlabError


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m peftlab.cost", description=__doc__.split("\n")[0])
    parser.add_argument("run", nargs="?", help="a finished run folder: its metrics.json gives the seconds/step")
    parser.add_argument("instances", nargs="*", help="INSTANCE=SECONDS_PER_STEP, or INSTANCE alone with a run folder")
    parser.add_argument("--steps", type=int, help="planned optimizer steps (default: the run's own)")
    parser.add_argument("--epochs", type=float, help="planned epochs, at the run's steps per epoch")
    parser.add_argument("--instance-count", type=int, default=1, help="instances billed per job (default 1)")
    parser.add_argument("--prices", help="price table YAML (default conf/cost/sagemaker.yaml)")
    args = parser.parse_intermixed_args(argv)
    if args.run and "=" in args.run:  # no run folder: the first positional is already INSTANCE=S
        args.instances, args.run = [args.run, *args.instances], None
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        table = load_prices(args.prices)
        pairs = dict(_pair(item) for item in args.instances)
        steps = args.steps
        if args.run:
            sps, run_steps, run_epochs = measured_seconds_per_step(args.run)
            # Instances named without a rate get the run's measured rate; none named: every row of the table.
            named = pairs or dict.fromkeys(table.instances)
            pairs = {name: sps if rate is None else rate for name, rate in named.items()}
            if args.epochs is not None:
                steps = round(args.epochs * run_steps / run_epochs)
            steps = steps or run_steps
        missing = [name for name, rate in pairs.items() if rate is None]
        if missing or not pairs or not steps:
            raise PeftlabError(
                "give --steps and INSTANCE=SECONDS_PER_STEP pairs (e.g. --steps 56850 ml.g4dn.xlarge=0.35), "
                "or a run folder"
            )
        print(format_table(estimate(table, steps, pairs, args.instance_count), table))
    except PeftlabError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


def _pair(item: str) -> tuple[str, float | None]:
    name, _, rate = item.partition("=")
    try:
        return name, float(rate) if rate else None
    except ValueError as err:
        raise PeftlabError(f"{item}: expected INSTANCE=SECONDS_PER_STEP (e.g. ml.g4dn.xlarge=0.35)") from err


if __name__ == "__main__":
    sys.exit(main())
