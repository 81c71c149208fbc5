variable "bucket_name" {
  description = "Globally unique bucket name."
  type        = string
}

variable "checkpoint_prefix" {
  description = "Key prefix of the spot checkpoints that the lifecycle rule expires."
  type        = string
}

variable "checkpoint_expiration_days" {
  description = "Days to keep checkpoints."
  type        = number
}

variable "force_destroy" {
  description = "Delete the bucket even when it holds objects."
  type        = bool
  default     = false
}
