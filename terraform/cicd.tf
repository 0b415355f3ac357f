# Delivery: a Cloud Build trigger per environment running cloudbuild.yaml on every merge to
# deploy_branch. staging deploys at once; prod (deploy_requires_approval) waits for an
# approver, after staging went green (docs/deploy.md, "Environments").
resource "google_cloudbuild_trigger" "deploy" {
  count = var.github_owner == "" ? 0 : 1

  name        = "ion-deploy-${var.environment}"
  description = "Deploy ION to ${var.environment} on merges to ${var.deploy_branch}."
  location    = "global"
  filename    = "cloudbuild.yaml"

  github {
    owner = var.github_owner
    name  = var.github_repo
    push {
      branch = var.deploy_branch
    }
  }

  approval_config {
    approval_required = var.deploy_requires_approval
  }

  # What cloudbuild.yaml needs to know about this environment.
  substitutions = {
    _ENV     = var.environment
    _REGIONS = join(" ", var.http_regions)
    _REGION  = var.region
  }

  service_account = var.deploy_service_account == "" ? null : "projects/${var.project_id}/serviceAccounts/${var.deploy_service_account}"

  depends_on = [google_project_service.apis]
}
