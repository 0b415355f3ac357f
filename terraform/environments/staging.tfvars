# staging: the production shape (two regions) in its own project; deployed on every merge.
environment  = "staging"
project_id   = "ion-mentoring-staging"
region       = "us-central1"
http_regions = ["us-central1", "us-east4"]
edge_domains = ["api.staging.ion-mentoring.example"]
web_domain   = "app.staging.ion-mentoring.example"

alert_emails = ["ion-oncall@example.com"]

# Rules are enforced here first, a release before prod (docs/operations.md, "Edge").
armor_enforced_rules = []

backup_retention_days           = 7
firestore_backup_retention_days = 7

budget_amount = 100

github_owner             = "ion-mentoring"
github_repo              = "ion-mentoring"
deploy_branch            = "^main$"
deploy_requires_approval = false

extra_environment = {
  ION_JWT_ISSUER   = "https://auth.staging.ion-mentoring.example/"
  ION_JWT_AUDIENCE = "ion-mentoring"
}
