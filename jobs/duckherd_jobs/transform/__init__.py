"""The transform stage: dbt-core + dbt-duckdb on the warehouse (`run_transform`), and
`prepare_project`, run at image build time so that pods never parse the dbt project."""

from duckherd_jobs.transform.invocation import prepare_project
from duckherd_jobs.transform.stage import run_transform

__all__ = ["prepare_project", "run_transform"]
