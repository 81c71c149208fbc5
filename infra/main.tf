# What peftlab's SageMaker jobs need: one private bucket and an execution role limited to it.
# terraform apply, then: terraform output -json > outputs.json; launch with sagemaker.terraform_outputs=infra/outputs.json

data "aws_caller_identity" "current" {}

module "s3" {
  source                     = "./modules/s3"
  bucket_name                = var.bucket_name
  checkpoint_prefix          = "${var.prefix}/checkpoints/"
  checkpoint_expiration_days = var.checkpoint_expiration_days
  force_destroy              = var.force_destroy
}

module "iam" {
  source     = "./modules/iam"
  role_name  = var.role_name
  bucket_arn = module.s3.bucket_arn
  region     = var.region
  account_id = data.aws_caller_identity.current.account_id
}
