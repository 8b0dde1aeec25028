"""Data: reading sources, demo data, batching."""
