output "chat_url" {
  description = "HTTPS URL of the chat function (POST /v1/chat, /v1/conversations)."
  value       = module.http_function["chat"].url
}

output "persona_route_url" {
  description = "HTTPS URL of the persona_route function (POST /v1/route, GET /v1/personas)."
  value       = module.http_function["persona_route"].url
}

output "persona_events_url" {
  description = "Internal URL of the persona_events consumer (reached by Pub/Sub push only)."
  value       = module.event_function["persona_events"].url
}

output "backup_url" {
  description = "Internal URL of the backup function (reached by Pub/Sub push only)."
  value       = module.event_function["backup"].url
}

output "services" {
  description = "Cloud Run service of each function, for traffic management (gcloud run services update-traffic)."
  value       = { for key, function in merge(module.http_function, module.event_function) : key => function.service }
}

output "events_topic" {
  description = "Pub/Sub topic of the domain events (ION_EVENTS_TOPIC)."
  value       = google_pubsub_topic.events.name
}

output "backup_bucket" {
  description = "Bucket holding the Firestore exports."
  value       = google_storage_bucket.backups.name
}

output "secrets_to_fill" {
  description = "Secret Manager secrets whose values must be added outside Terraform (docs/deploy.md)."
  value       = [google_secret_manager_secret.jwt.secret_id, google_secret_manager_secret.gemini_api_key.secret_id]
}
