output "role_arn" {
  description = "ARN of the SageMaker execution role."
  value       = aws_iam_role.sagemaker.arn
}

output "role_name" {
  description = "Name of the SageMaker execution role."
  value       = aws_iam_role.sagemaker.name
}
