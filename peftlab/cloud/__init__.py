"""SageMaker launch and in-container settings (boto3/sagemaker imported lazily where used); prices: peftlab.cost."""
