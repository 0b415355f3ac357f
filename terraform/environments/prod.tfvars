# prod: two regions behind the edge; deployed after an approver releases the build.
environment  = "prod"
project_id   = "ion-mentoring-prod"
region       = "us-central1"
http_regions = ["us-central1", "us-east4"]
edge_domains = ["api.ion-mentoring.example"]
web_domain   = "app.ion-mentoring.example"

alert_emails = ["ion-oncall@example.com"]

armor_enforced_rules = []

chat_min_instances = 1

backup_retention_days           = 14
firestore_backup_retention_days = 14

budget_amount = 500

github_owner             = "ion-mentoring"
github_repo              = "ion-mentoring"
deploy_branch            = "^main$"
deploy_requires_approval = true

extra_environment = {
  ION_JWT_ISSUER   = "https://auth.ion-mentoring.example/"
  ION_JWT_AUDIENCE = "ion-mentoring"
}
