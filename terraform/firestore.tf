# Firestore: the database, its composite index, index exemptions and TTL policies
# (docs/data-model.md).

resource "google_firestore_database" "main" {
  project                           = var.project_id
  name                              = var.firestore_database
  location_id                       = var.firestore_location
  type                              = "FIRESTORE_NATIVE"
  point_in_time_recovery_enablement = "POINT_IN_TIME_RECOVERY_ENABLED"
  delete_protection_state           = "DELETE_PROTECTION_ENABLED"
  deletion_policy                   = "ABANDON"

  depends_on = [google_project_service.apis]
}

# The listing query: conversations of a user, newest first, id as tie-breaker.
resource "google_firestore_index" "conversations_by_user" {
  project     = var.project_id
  database    = google_firestore_database.main.name
  collection  = "conversations"
  query_scope = "COLLECTION"

  fields {
    field_path = "user_id"
    order      = "ASCENDING"
  }
  fields {
    field_path = "updated_at"
    order      = "DESCENDING"
  }
  fields {
    field_path = "__name__"
    order      = "DESCENDING"
  }
}

# Single-field index exemptions: never queried, they would only cost index writes.
resource "google_firestore_field" "index_exemptions" {
  for_each = {
    "messages.text"    = { collection = "messages", field = "text" }
    "messages.routing" = { collection = "messages", field = "routing" }
    "messages.usage"   = { collection = "messages", field = "usage" }
    "outbox.payload"   = { collection = "outbox", field = "payload" }
    "routing_disagreements.message" = {
      collection = "routing_disagreements", field = "message"
    }
    "conversations.memory" = { collection = "conversations", field = "memory" }
    "learner_profiles.profile" = {
      collection = "learner_profiles", field = "profile"
    }
    "learner_profiles.suggestions" = {
      collection = "learner_profiles", field = "suggestions"
    }
  }

  project    = var.project_id
  database   = google_firestore_database.main.name
  collection = each.value.collection
  field      = each.value.field

  index_config {}
}

# TTL policies: short-lived documents carry `expires_at`; Firestore deletes them (within
# about a day of expiry) and the code treats an expired document as absent meanwhile.
resource "google_firestore_field" "ttl" {
  for_each = {
    "response_cache.expires_at"   = { collection = "response_cache", field = "expires_at" }
    "idempotency_keys.expires_at" = { collection = "idempotency_keys", field = "expires_at" }
    "quota.expires_at"            = { collection = "quota", field = "expires_at" }
    "processed_events.expires_at" = { collection = "processed_events", field = "expires_at" }
    "routing_disagreements.expires_at" = {
      collection = "routing_disagreements", field = "expires_at"
    }
  }

  project    = var.project_id
  database   = google_firestore_database.main.name
  collection = each.value.collection
  field      = each.value.field

  ttl_config {}
  # A TTL timestamp is written on every document and never queried: no index on it.
  index_config {}
}
