"""Durable ingestion: watched files, NATS JetStream and HTTP batches into the store."""
