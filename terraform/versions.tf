terraform {
  required_version = ">= 1.6.0, < 2.0.0"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "6.50.0"
    }
  }

  # State: keep it in a GCS bucket created once by hand (docs/deploy.md), e.g.
  #   terraform init -backend-config="bucket=<project>-ion-tfstate"
  backend "gcs" {
    prefix = "ion/terraform"
  }
}

provider "google" {
  project = var.project_id
  region  = var.region

  default_labels = var.labels
}
