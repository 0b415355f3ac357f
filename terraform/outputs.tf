output "api_url" {
  description = "Public base URL of both APIs, through the load balancer (chat: /v1/chat, /v1/conversations; persona_route: /v1/route, /v1/personas, /v1/routing/stats)."
  value       = "https://${var.edge_domains[0]}"
}

output "web_url" {
  description = "The learner web chat (the operator page is at /operator)."
  value       = local.web_origin
}

output "edge_ip" {
  description = "Address of the load balancer: point the A records of edge_domains at it (the managed certificate is issued once they do)."
  value       = google_compute_global_address.edge.address
}

output "http_function_urls" {
  description = "run.app URL of each public API per region (<entry point>-<region>); reachable only from inside Google Cloud (ingress internal-and-cloud-load-balancing)."
  value       = { for key, function in module.http_function : key => function.url }
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
  description = "Cloud Run service of each function (public APIs: one per region, keyed <entry point>-<region>), for traffic management (gcloud run services update-traffic)."
  value       = { for key, function in merge(module.http_function, module.event_function) : key => function.service }
}

output "startup_cpu_boost_services" {
  description = "Cloud Run services (the same name in every region of http_regions) whose revisions must start with startup CPU boost: all public APIs when startup_cpu_boost is true, none otherwise. cloudbuild.yaml hands it to scripts/rollout.sh, which sets or clears the boost on each new revision before it is tagged candidate."
  value       = var.startup_cpu_boost ? sort(distinct([for function in module.http_function : function.service])) : []
}

output "http_regions" {
  description = "Regions the public APIs run in (cloudbuild.yaml rolls out each in turn)."
  value       = var.http_regions
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
  description = "Secret Manager secrets whose values must be added outside Terraform (docs/deploy.md); the Gemini key only in api_key mode."
  value       = var.gemini_auth == "api_key" ? [google_secret_manager_secret.jwt.secret_id, google_secret_manager_secret.gemini_api_key.secret_id] : [google_secret_manager_secret.jwt.secret_id]
}
