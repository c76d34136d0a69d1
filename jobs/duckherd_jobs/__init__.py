"""What stage pods and local mode run: ingest, transform, check, publish on one DuckDB file."""
