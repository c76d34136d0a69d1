"""What a source hands to the load step: a SELECT over files that are already local."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Extracted:
    """A source's records, fetched before the warehouse lock is taken.

    `select_sql` reads the spooled (or local) files with DuckDB; `parameters` bind its `?`
    placeholders. `fallback_sql`, when set, is a slower reading that is always right (full
    schema inference): the load retries with it if the fast reading fails on a value that does
    not fit the sampled types.
    """

    select_sql: str
    parameters: list[object] = field(default_factory=list)
    fallback_sql: str | None = None
    empty: bool = False
