output "name" {
  description = "Function name."
  value       = google_cloudfunctions2_function.this.name
}

output "url" {
  description = "HTTPS URL of the function."
  value       = google_cloudfunctions2_function.this.url
}

output "service" {
  description = "Name of the Cloud Run service behind the function (traffic is managed on it)."
  value       = google_cloudfunctions2_function.this.name
}

output "source_object" {
  description = "Uploaded source object (named by the archive's SHA-256)."
  value       = google_storage_bucket_object.source.name
}
