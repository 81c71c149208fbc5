"""SageMaker launch, in-container settings and the cost table (boto3/sagemaker imported lazily where used)."""
