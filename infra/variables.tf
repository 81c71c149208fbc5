variable "region" {
  description = "AWS region of the bucket and the training jobs (launch_sagemaker.py reads it from the outputs)."
  type        = string
  default     = "us-east-1"
}

variable "bucket_name" {
  description = "Globally unique name of the S3 bucket for code, data, outputs and checkpoints."
  type        = string
}

variable "role_name" {
  description = "Name of the SageMaker execution role."
  type        = string
  default     = "peftlab-sagemaker"
}

variable "prefix" {
  description = "Key prefix the jobs use inside the bucket (sagemaker.prefix in conf/launch_sagemaker.yaml)."
  type        = string
  default     = "peftlab"
}

variable "checkpoint_expiration_days" {
  description = "Days after which spot checkpoints (<prefix>/checkpoints/) are deleted; outputs are kept."
  type        = number
  default     = 14
}

variable "force_destroy" {
  description = "Let `terraform destroy` delete a bucket that still holds objects."
  type        = bool
  default     = false
}
