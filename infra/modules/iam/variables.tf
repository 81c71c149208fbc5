variable "role_name" {
  description = "Name of the SageMaker execution role."
  type        = string
}

variable "bucket_arn" {
  description = "ARN of the only bucket the jobs read and write."
  type        = string
}

variable "region" {
  description = "Region of the training jobs (scopes the log and image permissions)."
  type        = string
}

variable "account_id" {
  description = "Account that owns the jobs (trust condition and log group ARNs)."
  type        = string
}

variable "image_account_ids" {
  description = "Accounts whose ECR repositories hold the training images (763104351884: AWS Deep Learning Containers)."
  type        = list(string)
  default     = ["763104351884"]
}
