"""The `slurm` Hydra launcher (hydra/launcher=slurm): hydra-submitit-launcher's, checked against the hardware group."""
