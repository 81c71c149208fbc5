"""The `sagemaker` Hydra launcher: each point of a `python launch_sagemaker.py -m ...` sweep is a SageMaker job."""
