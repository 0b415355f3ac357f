# The least a deployment needs: copy to terraform/terraform.tfvars and set your project.
project_id = "my-ion-project"
region     = "us-central1"

alert_emails = ["oncall@example.com"]

extra_environment = {
  ION_JWT_ISSUER   = "https://auth.example.com/"
  ION_JWT_AUDIENCE = "ion-mentoring"
}

# The public domain of the APIs: point its A record at the `edge_ip` output.
edge_domains = ["api.example.com"]
web_domain   = "app.example.com"
