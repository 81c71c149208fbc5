"""The `sagemaker` group (conf/sagemaker/): the instances a SageMaker job rents, checked before any launch.

Only launch_sagemaker.py reads these settings; the job's train.py needs the machine alone (the hardware group), so a
local run never imports this module. A SageMaker hardware option selects its instances in its defaults list
(conf/hardware/g4dn_spot.yaml picks sagemaker/g4dn_spot) and takes its num_nodes from their count.
"""

from dataclasses import dataclass, fields

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from peftlab.conf import CONF_DIR
from peftlab.config.checks import SettingError, check
from peftlab.errors import ConfigError

MAX_RUNTIME_S = 28 * 24 * 3600  # SageMaker's upper limit on MaxRuntimeInSeconds (and MaxWaitTimeInSeconds)


@dataclass
class SageMakerSettings:
    """Instance type and count, disk, spot and the job's stop conditions (the sagemaker.* keys of an option)."""

    instance_type: str
    instance_count: int = 1
    volume_size_gb: int = 50
    spot: bool = False
    max_run: int = 3600  # seconds (the SDK's default when unset)
    max_wait: int | None = None  # seconds, spot only: run time plus time waiting for spot capacity, >= max_run

    def __post_init__(self) -> None:
        """Spot needs max_wait >= max_run (SageMaker rejects the job otherwise, after the upload); on-demand must not
        set max_wait (CreateTrainingJob refuses MaxWaitTimeInSeconds without managed spot)."""
        check(
            self.instance_type.startswith("ml."),
            "instance_type",
            self.instance_type,
            "a SageMaker type such as ml.g4dn.xlarge",
        )
        check(self.instance_count >= 1, "instance_count", self.instance_count, "must be >= 1")
        check(1 <= self.volume_size_gb <= 16384, "volume_size_gb", self.volume_size_gb, "GB, 1 to 16384")
        check(1 <= self.max_run <= MAX_RUNTIME_S, "max_run", self.max_run, f"seconds, 1 to {MAX_RUNTIME_S} (28 days)")
        if self.spot:
            check(
                self.max_wait is not None and self.max_run <= self.max_wait <= MAX_RUNTIME_S,
                "max_wait",
                self.max_wait,
                f"seconds, >= max_run ({self.max_run}) and <= {MAX_RUNTIME_S} with spot=true",
            )
        else:
            check(
                self.max_wait is None, "max_wait", self.max_wait, "null unless spot=true (it bounds the wait for spot)"
            )


def launch_keys() -> set[str]:
    """The launch's own keys beside the instance keys (bucket, role, estimate, ...), as launch_sagemaker.yaml lists
    them: read from that file, so the list lives in one place."""
    return set(OmegaConf.load(CONF_DIR / "launch_sagemaker.yaml").sagemaker)


def sagemaker_settings(cfg: DictConfig) -> SageMakerSettings:
    """cfg.sagemaker's instance keys, typed and checked; the first bad one is a ConfigError naming the full key.

    Launch-only keys beside them (bucket, role, ...: conf/launch_sagemaker.yaml) are read by the launch itself.
    """
    node = cfg.get("sagemaker") or {}
    if not node.get("instance_type"):
        options = ", ".join(sorted(path.stem for path in (CONF_DIR / "sagemaker").glob("*.yaml")))
        raise ConfigError(
            f"hardware={cfg.hardware.name}: not a SageMaker option (no sagemaker.instance_type); "
            f"use hardware=<one of {options}>"
        )
    known = {f.name for f in fields(SageMakerSettings)}
    allowed = known | launch_keys()
    unknown = sorted(key for key in node if key not in allowed)  # a `+sagemaker.<typo>=` Hydra let through
    if unknown:
        raise ConfigError(f"sagemaker.{unknown[0]}: unknown key; allowed keys are {', '.join(sorted(allowed))}")
    try:
        values = {key: node[key] for key in node if key in known}
        settings = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(SageMakerSettings), values))
    except SettingError as err:
        raise ConfigError(f"sagemaker.{err}") from err
    except OmegaConfBaseException as err:  # a value of the wrong type (sagemaker.max_run=soon) or unresolvable
        key = f"sagemaker.{err.full_key}" if getattr(err, "full_key", None) else "sagemaker"
        raise ConfigError(f"{key}: {str(err).strip().splitlines()[0]}") from err
    num_nodes = cfg.hardware.num_nodes
    if num_nodes != settings.instance_count:
        raise ConfigError(
            f"hardware.num_nodes={num_nodes}: must equal sagemaker.instance_count ({settings.instance_count}): "
            "one Lightning node per instance"
        )
    return settings
