# Secrets: created here, values added outside Terraform (docs/deploy.md), so no secret
# value ever lands in the Terraform state.

resource "google_secret_manager_secret" "jwt" {
  secret_id = "${var.secret_prefix}jwt-secret"

  replication {
    auto {}
  }

  depends_on = [google_project_service.apis]
}

resource "google_secret_manager_secret" "gemini_api_key" {
  secret_id = "${var.secret_prefix}gemini-api-key"

  replication {
    auto {}
  }

  depends_on = [google_project_service.apis]
}
