"""The publish stage: marts out of the warehouse into Redis and PostgreSQL, behind the gate.

`run_publish` publishes each `spec.publish[]` entry only when the quality gate is open (see
`gate`). It validates every entry before writing anything, then renders each mart in a
background feed on a read-only connection that closes as soon as the read is done (see
`feed`), while the target is written. Each target is swapped atomically on its own (see
`redis_target` and `postgres_target` for the layout readers see); one target failing does
not stop the others, and the summary lists what was published and what failed.
"""

from duckherd_jobs.publish.stage import run_publish

__all__ = ["run_publish"]
