"""Checks of the SageMaker fields of a hardware option (instance, count, spot, stop conditions), before any launch."""

from typing import Any

from peftlab.config.checks import check

MAX_RUNTIME_S = 28 * 24 * 3600  # SageMaker's upper limit on MaxRuntimeInSeconds (and MaxWaitTimeInSeconds)


def check_sagemaker(hw: Any) -> None:
    """Fields of HardwareSettings that only a SageMaker launch reads; unset instance_type = local hardware.

    Spot needs max_wait >= max_run (SageMaker rejects the job otherwise, after the upload); on-demand must not set
    max_wait (CreateTrainingJob refuses MaxWaitTimeInSeconds without managed spot).
    """
    check(hw.instance_count >= 1, "instance_count", hw.instance_count, "must be >= 1")
    if hw.instance_type is None:
        return
    check(
        hw.instance_type.startswith("ml."), "instance_type", hw.instance_type, "a SageMaker type such as ml.g4dn.xlarge"
    )
    check(
        hw.num_nodes == hw.instance_count,
        "num_nodes",
        hw.num_nodes,
        f"must equal instance_count ({hw.instance_count}): one Lightning node per instance",
    )
    check(1 <= hw.volume_size_gb <= 16384, "volume_size_gb", hw.volume_size_gb, "GB, 1 to 16384")
    check(1 <= hw.max_run <= MAX_RUNTIME_S, "max_run", hw.max_run, f"seconds, 1 to {MAX_RUNTIME_S} (28 days)")
    if hw.spot:
        check(
            hw.max_wait is not None and hw.max_run <= hw.max_wait <= MAX_RUNTIME_S,
            "max_wait",
            hw.max_wait,
            f"seconds, >= max_run ({hw.max_run}) and <= {MAX_RUNTIME_S} with spot=true",
        )
    else:
        check(hw.max_wait is None, "max_wait", hw.max_wait, "null unless spot=true (it bounds the wait for spot)")
