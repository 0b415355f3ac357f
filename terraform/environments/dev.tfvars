# dev: one region, every Cloud Armor rule in preview, no deploy trigger (deploy by hand).
environment  = "dev"
project_id   = "ion-mentoring-dev"
region       = "us-central1"
http_regions = ["us-central1"]
edge_domains = ["api.dev.ion-mentoring.example"]
web_domain   = "app.dev.ion-mentoring.example"

alert_emails = ["ion-dev@example.com"]

backup_retention_days           = 3
firestore_backup_retention_days = 3

billing_account = ""

extra_environment = {
  ION_JWT_ISSUER   = "https://auth.dev.ion-mentoring.example/"
  ION_JWT_AUDIENCE = "ion-mentoring"
}
