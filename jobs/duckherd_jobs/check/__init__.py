"""The check stage: Great Expectations' vocabulary and result format, computed in DuckDB."""

from duckherd_jobs.check.stage import run_check

__all__ = ["run_check"]
