"""The ingest stage: every source of a pipeline into `raw.<name>`, in one transaction."""

from duckherd_jobs.ingest.stage import run_ingest

__all__ = ["run_ingest"]
