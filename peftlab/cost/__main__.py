"""`python -m peftlab.cost steps=N 'seconds_per_step={INSTANCE:S,...}'` or `run=<run folder> [epochs=E]`: the cost
table (keys: conf/cost.yaml, or --help)."""

import hydra
from omegaconf import DictConfig, ListConfig, OmegaConf

from peftlab.cli import run_command
from peftlab.conf import CONFIG_PATH
from peftlab.cost import estimate_plan, format_table, load_prices, price_table
from peftlab.errors import ConfigError


def arguments(cfg: DictConfig) -> dict:
    """estimate_plan's arguments from conf/cost.yaml's keys, the price table loaded; no run folder is read yet."""
    rates, names = cfg.seconds_per_step, cfg.instances
    if rates is not None and not isinstance(rates, DictConfig):
        raise ConfigError(f"seconds_per_step={rates}: a mapping, e.g. 'seconds_per_step={{ml.g4dn.xlarge:0.35}}'")
    names = list(names) if isinstance(names, ListConfig) else [names] if names else []  # instances=ml.g4dn.xlarge
    return {
        "table": load_prices(cfg.prices) if cfg.prices else price_table(cfg.cost),
        "seconds_per_step": OmegaConf.to_container(rates) if rates is not None else {},
        "instances": [str(name) for name in names],
        "steps": cfg.steps,
        "run": None if cfg.run is None else str(cfg.run),
        "epochs": cfg.epochs,
        "instance_count": cfg.instance_count,
    }


def cost(cfg: DictConfig) -> str:
    """Print and return the table conf/cost.yaml's keys ask for."""
    args = arguments(cfg)
    text = format_table(estimate_plan(**args), args["table"])
    print(text)
    return text


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="cost")
def main(cfg: DictConfig) -> None:
    run_command(cost, cfg)


if __name__ == "__main__":
    main()
