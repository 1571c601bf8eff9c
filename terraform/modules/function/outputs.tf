output "name" {
  value = google_cloudfunctions2_function.this.name
}

output "url" {
  description = "The function's Cloud Run URL."
  value       = google_cloudfunctions2_function.this.url
}

output "source_object" {
  description = "The content-addressed bundle object this revision was built from."
  value       = google_storage_bucket_object.source.name
}
