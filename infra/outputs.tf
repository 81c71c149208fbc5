# Names match what launch_sagemaker.py reads from `terraform output -json` (peftlab/cloud/settings.py).
output "bucket_name" {
  description = "PEFTLAB_BUCKET"
  value       = module.s3.bucket_name
}

output "role_arn" {
  description = "PEFTLAB_SAGEMAKER_ROLE"
  value       = module.iam.role_arn
}

output "region" {
  description = "AWS_REGION"
  value       = var.region
}
