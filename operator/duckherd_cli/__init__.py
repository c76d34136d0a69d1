"""The `duckherd` command: the one package that may reach both the operator and the jobs.

It imports them lazily, inside each command, so `duckherd operator` loads nothing of the jobs
(DuckDB, dbt, Great Expectations, rich) and `duckherd job` nothing of the operator (Kopf).
"""
