"""The DataPipeline API (duckherd.io/v1alpha1): the single source of truth.

The CRD schema in `crds/` is generated from these models (`make crds`); the operator and the
stage jobs parse manifests with them. Field names are the camelCase names users write; every
field carries a description because `kubectl explain` shows it. Rules that span fields live
twice on purpose: as CEL (`x-kubernetes-validations`, enforced at admission) and as pydantic
validators (enforced in local mode and in the jobs, which never see the API server).
"""

from __future__ import annotations

import re
import zoneinfo
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal, get_args

from croniter import CroniterBadDateError, croniter
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.config import JsonDict
from pydantic_core import PydanticCustomError

from duckherd.contract import ENV_SECRET_PREFIX
from duckherd.errors import PipelineError
from duckherd.kpis import KPI_NAME_PATTERN, MAX_EXPRESSION_LENGTH, expression_problem

GROUP = "duckherd.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "DataPipeline"
PLURAL = "datapipelines"
SINGULAR = "datapipeline"
SHORT_NAMES = ["dp"]
CATEGORIES = ["duckherd"]

STAGES: tuple[str, ...] = ("ingest", "transform", "check", "publish")
Stage = Literal["ingest", "transform", "check", "publish"]

IDENTIFIER_PATTERN = r"^[a-z_][a-z0-9_]{0,62}$"
COLUMN_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,62}$"
DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
# `<name>-transform` must fit a CronJob name (52 characters); the CRD refuses longer names.
MAX_PIPELINE_NAME = 42
# A Kubernetes resource.Quantity (the regular expression apimachinery's parser accepts).
QUANTITY_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
    r"(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)


def _cron_field(number: str, *, names: bool = False, any_mark: bool = False) -> str:
    """One field of a standard cron line: `*`, values, ranges, steps, lists."""
    value = f"({number}|[A-Za-z]{{3}})" if names else number
    star = r"\*|\?" if any_mark else r"\*"
    item = rf"({star}|{value}(-{value})?)(/[0-9]{{1,2}})?"
    return rf"{item}(,{item})*"


# The cron lines Kubernetes CronJobs take (five fields or a macro; no CRON_TZ=), with each
# field's value range; what a pattern cannot see (`31 2` for Feb 31) the operator reports.
CRON_PATTERN = (
    r"^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|"
    + r"\s+".join(
        (
            _cron_field(r"[0-5]?[0-9]"),
            _cron_field(r"(2[0-3]|[01]?[0-9])"),
            _cron_field(r"(3[01]|[12][0-9]|0?[1-9])", any_mark=True),
            _cron_field(r"(1[0-2]|0?[1-9])", names=True),
            _cron_field(r"[0-7]", names=True, any_mark=True),
        )
    )
    + r")$"
)


def cel(rule: str, message: str, field_path: str | None = None) -> JsonDict:
    """One `x-kubernetes-validations` entry."""
    entry: JsonDict = {"rule": rule, "message": message}
    if field_path:
        entry["fieldPath"] = field_path
    return entry


def parse_duration(text: str) -> timedelta:
    """Parse a Go-style duration (`90s`, `24h`, `1h30m`); the same syntax CEL's duration() uses."""
    if not re.fullmatch(DURATION_PATTERN, text):
        raise ValueError(f"invalid duration {text!r}: use Go syntax such as 30m, 24h or 1h30m")
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    seconds = sum(
        float(number) * units[unit] for number, unit in re.findall(r"([0-9.]+)(ms|s|m|h)", text)
    )
    return timedelta(seconds=seconds)


class ApiModel(BaseModel):
    """Base: camelCase field names as written in manifests, unknown fields rejected."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=False)


def _duplicates(names: list[str]) -> list[str]:
    return sorted({name for name in names if names.count(name) > 1})


def _exactly_one(model: BaseModel, names: tuple[str, ...], where: str) -> None:
    present = [name for name in names if getattr(model, name) is not None]
    if len(present) != 1:
        raise ValueError(f"{where}: set exactly one of {', '.join(names)} (found {len(present)})")


# --------------------------------------------------------------------------- references


class SecretKeyRef(ApiModel):
    """A key of a Secret in the pipeline's namespace. Values reach pods only as env vars."""

    name: str = Field(
        description="Name of the Secret in the pipeline's namespace.",
        pattern=DNS_SUBDOMAIN_PATTERN,
        max_length=253,
    )
    key: str = Field(
        description="Key within the Secret.",
        pattern=r"^[-._a-zA-Z0-9]+$",
        max_length=253,
    )

    @property
    def env_name(self) -> str:
        """The env var a stage pod receives this key in (the operator maps it from the Secret)."""
        return ENV_SECRET_PREFIX + re.sub(r"[^A-Z0-9]", "_", f"{self.name}_{self.key}".upper())

    def resolve(self, env: Mapping[str, str]) -> str:
        """The secret value from the environment; the error names the reference, not the value."""
        try:
            return env[self.env_name]
        except KeyError:
            raise SecretNotFound(
                f"secret {self.name}/{self.key} is not available: expected env var "
                f"{self.env_name} (in a cluster the operator maps it from the Secret)"
            ) from None


class SecretNotFound(PipelineError, LookupError):
    """A referenced secret value is not in the environment."""


# --------------------------------------------------------------------------- sources


class Pagination(ApiModel):
    """How an HTTP source walks through pages."""

    type: Literal["none", "page", "offset", "cursor", "link"] = Field(
        default="none",
        description=(
            "none: one request. page: page number parameter. offset: offset/limit parameters. "
            "cursor: a cursor from the response is sent with the next request. link: follow the "
            "RFC 8288 `Link: <...>; rel=next` response header."
        ),
    )
    pageSize: int = Field(default=100, ge=1, le=100_000, description="Records requested per page.")
    pageParam: str = Field(
        default="page", max_length=63, description="Query parameter carrying the page number."
    )
    startPage: int = Field(default=1, ge=0, description="Number of the first page (page mode).")
    sizeParam: str | None = Field(
        default="page_size",
        max_length=63,
        description="Query parameter carrying the page size (page and offset modes); null to omit.",
    )
    offsetParam: str = Field(
        default="offset", max_length=63, description="Query parameter carrying the offset."
    )
    cursorParam: str = Field(
        default="cursor", max_length=63, description="Query parameter carrying the cursor."
    )
    cursorPath: str = Field(
        default="next_cursor",
        max_length=253,
        description="Dotted path of the next cursor in the response body (cursor mode).",
    )
    totalPath: str | None = Field(
        default=None,
        max_length=253,
        description=(
            "Dotted path of the total record count in the response body. When present, page "
            "and offset modes fetch the remaining pages concurrently."
        ),
    )
    maxPages: int | None = Field(
        default=None, ge=1, description="Stop after this many pages (a safety bound)."
    )


class HttpAuth(ApiModel):
    """Credentials for an HTTP source, always read from a Secret."""

    type: Literal["bearer", "basic", "header", "query"] = Field(
        description=(
            "bearer: `Authorization: Bearer <secret>`. basic: `user:password` secret value. "
            "header: the secret value in `headerName`. query: the secret in query `paramName`."
        )
    )
    secretRef: SecretKeyRef = Field(description="The Secret key holding the credential.")
    headerName: str | None = Field(
        default=None, max_length=253, description="Header name for type `header`."
    )
    paramName: str | None = Field(
        default=None, max_length=63, description="Query parameter name for type `query`."
    )


class HttpSource(ApiModel):
    """A JSON REST API."""

    url: str = Field(
        description="Endpoint URL (http or https).", pattern=r"^https?://", max_length=2048
    )
    params: dict[str, str] = Field(
        default_factory=dict, description="Query parameters sent with every request."
    )
    headers: dict[str, str] = Field(
        default_factory=dict,
        description="Extra request headers (never credentials: use `auth`).",
    )
    recordsPath: str = Field(
        default="",
        max_length=253,
        description="Dotted path of the record list in the response body; empty for the root.",
    )
    pagination: Pagination = Field(
        default_factory=Pagination, description="How to walk through pages."
    )
    auth: HttpAuth | None = Field(default=None, description="Credentials from a Secret.")
    incrementalParam: str | None = Field(
        default=None,
        max_length=63,
        description=(
            "Query parameter that receives the stored incremental cursor value (e.g. "
            "`updated_since`), so the API returns only newer records."
        ),
    )
    timeoutSeconds: float = Field(default=30.0, gt=0, le=3600, description="Per-request timeout.")
    maxRetries: int = Field(
        default=5, ge=0, le=20, description="Retries per request (backoff, honours Retry-After)."
    )
    concurrency: int = Field(
        default=4, ge=1, le=64, description="Pages fetched at once where pagination allows."
    )


class PostgresConnection(ApiModel):
    """Where a PostgreSQL server is; the password comes from a Secret."""

    host: str = Field(description="Host name or IP address.", max_length=253)
    port: int = Field(default=5432, ge=1, le=65535, description="TCP port.")
    database: str = Field(description="Database name.", max_length=63)
    user: str = Field(description="User name.", max_length=63)
    passwordSecretRef: SecretKeyRef | None = Field(
        default=None, description="Secret key holding the password."
    )
    sslMode: Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"] = Field(
        default="prefer", description="libpq sslmode."
    )


class PostgresSource(ApiModel):
    """A PostgreSQL table or query, read with `COPY ... TO STDOUT`."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "has(self.dsnSecretRef) != has(self.connection)",
                    "set exactly one of dsnSecretRef or connection",
                ),
                cel(
                    "has(self.table) != has(self.query)",
                    "set exactly one of table or query",
                ),
            ]
        }
    )

    dsnSecretRef: SecretKeyRef | None = Field(
        default=None, description="Secret key holding a libpq connection string (DSN)."
    )
    connection: PostgresConnection | None = Field(
        default=None, description="Connection parameters (alternative to dsnSecretRef)."
    )
    table: str | None = Field(
        default=None,
        pattern=r"^([A-Za-z_][A-Za-z0-9_]{0,62}\.)?[A-Za-z_][A-Za-z0-9_]{0,62}$",
        max_length=127,
        description="Table to read, `schema.table` or `table`.",
    )
    query: str | None = Field(
        default=None,
        max_length=65536,
        description="A SELECT to read instead of a table (wrapped as a subquery).",
    )

    @model_validator(mode="after")
    def _one_connection_one_relation(self) -> PostgresSource:
        _exactly_one(self, ("dsnSecretRef", "connection"), "postgres")
        _exactly_one(self, ("table", "query"), "postgres")
        return self


class FileSource(ApiModel):
    """CSV, Parquet or NDJSON from a path on a volume or a URL."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel("has(self.path) != has(self.url)", "set exactly one of path or url")
            ]
        }
    )

    path: str | None = Field(
        default=None, max_length=4096, description="Path (glob allowed) inside the pod."
    )
    url: str | None = Field(
        default=None, pattern=r"^https?://", max_length=2048, description="HTTP(S) URL."
    )
    format: Literal["csv", "parquet", "ndjson", "json"] = Field(
        description="File format (`json` is a JSON array of records)."
    )
    delimiter: str = Field(default=",", min_length=1, max_length=1, description="CSV delimiter.")
    header: bool = Field(default=True, description="CSV: the first line holds column names.")

    @model_validator(mode="after")
    def _one_location(self) -> FileSource:
        _exactly_one(self, ("path", "url"), "file")
        return self


class Incremental(ApiModel):
    """Load only records newer than the last run's maximum of a cursor column."""

    cursorField: str = Field(
        pattern=COLUMN_PATTERN, description="Column whose maximum is remembered between runs."
    )
    initialValue: str | None = Field(
        default=None, max_length=253, description="Cursor value used by the first run."
    )


class Source(ApiModel):
    """One source; lands in `raw.<name>`. Set exactly one of http, postgres, file."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "[has(self.http), has(self.postgres), has(self.file)].filter(x, x).size() == 1",
                    "set exactly one of http, postgres, file",
                ),
                cel(
                    "!has(self.writeDisposition) || self.writeDisposition != 'merge' || "
                    "(has(self.primaryKey) && size(self.primaryKey) > 0)",
                    "writeDisposition merge needs a primaryKey",
                    ".primaryKey",
                ),
                cel(
                    "!(has(self.retainFor) && has(self.keepLoads))",
                    "set at most one of retainFor, keepLoads",
                    ".keepLoads",
                ),
            ]
        }
    )

    name: str = Field(
        pattern=IDENTIFIER_PATTERN,
        max_length=63,
        description="Source name; also the table name in the `raw` schema.",
    )
    primaryKey: list[Annotated[str, Field(pattern=COLUMN_PATTERN, max_length=63)]] = Field(
        default_factory=list, max_length=16, description="Primary key columns (merge key)."
    )
    writeDisposition: Literal["append", "replace", "merge"] = Field(
        default="append",
        description="append: add rows. replace: swap the table. merge: upsert by primaryKey.",
    )
    incremental: Incremental | None = Field(
        default=None, description="Incremental loading by a cursor column."
    )
    http: HttpSource | None = Field(default=None, description="A JSON REST API.")
    postgres: PostgresSource | None = Field(default=None, description="A PostgreSQL relation.")
    file: FileSource | None = Field(default=None, description="A CSV / Parquet / NDJSON file.")
    retainFor: str | None = Field(
        default=None,
        pattern=DURATION_PATTERN,
        max_length=32,
        description=(
            "Retention: prune raw rows loaded longer ago than this (Go syntax, e.g. 720h). "
            "Pruning runs at the end of ingest and never removes rows no transform has built "
            "from yet (see docs/backup.md). Excludes keepLoads."
        ),
    )
    keepLoads: int | None = Field(
        default=None,
        ge=1,
        le=100_000,
        description=(
            "Retention: keep the raw rows of the last N loads that wrote rows, prune older "
            "ones (same rules as retainFor, which it excludes)."
        ),
    )

    @model_validator(mode="after")
    def _one_kind(self) -> Source:
        _exactly_one(self, ("http", "postgres", "file"), f"sources[{self.name}]")
        if self.writeDisposition == "merge" and not self.primaryKey:
            raise ValueError(f"sources[{self.name}].primaryKey: writeDisposition merge needs it")
        if self.retainFor is not None and self.keepLoads is not None:
            raise ValueError(f"sources[{self.name}]: set at most one of retainFor, keepLoads")
        return self

    @property
    def kind(self) -> Literal["http", "postgres", "file"]:
        if self.http is not None:
            return "http"
        if self.postgres is not None:
            return "postgres"
        return "file"


# --------------------------------------------------------------------------- transform


class DbtProject(ApiModel):
    """Where the dbt project comes from; default: the project baked into the image."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "!(has(self.path) && has(self.configMap))",
                    "set at most one of path or configMap",
                )
            ]
        }
    )

    path: str | None = Field(
        default=None,
        max_length=4096,
        description="Path of the project inside the pod (a volume); relative paths resolve "
        "against the manifest's directory in local mode.",
    )
    configMap: str | None = Field(
        default=None,
        pattern=DNS_SUBDOMAIN_PATTERN,
        max_length=253,
        description="ConfigMap holding a flat dbt project (mounted into the transform pod).",
    )


class DbtTransform(ApiModel):
    """dbt-core with dbt-duckdb against the warehouse."""

    project: DbtProject = Field(default_factory=DbtProject, description="Project location.")
    select: list[Annotated[str, Field(max_length=1024)]] = Field(
        default_factory=list, max_length=64, description="dbt --select arguments."
    )
    exclude: list[Annotated[str, Field(max_length=1024)]] = Field(
        default_factory=list, max_length=64, description="dbt --exclude arguments."
    )
    vars: dict[str, Any] = Field(default_factory=dict, description="dbt --vars.")
    fullRefresh: bool = Field(default=False, description="Rebuild incremental models.")
    threads: int = Field(default=1, ge=1, le=16, description="dbt threads.")
    schedule: str | None = Field(
        default=None,
        max_length=253,
        json_schema_extra={"pattern": CRON_PATTERN},
        description="Own cron schedule for the transform CronJob (it still chains after ingest).",
    )

    @field_validator("schedule")
    @classmethod
    def _valid_schedule(cls, value: str | None) -> str | None:
        return None if value is None else validate_cron(value)


class Transform(ApiModel):
    """The transform stage."""

    dbt: DbtTransform = Field(description="dbt settings.")


# --------------------------------------------------------------------------- quality

# Schema validation: judged from the catalog, no scan (jobs: duckherd_jobs.check.schema).
SchemaExpectationName = Literal[
    "expect_column_to_exist",
    "expect_table_columns_to_match_set",
    "expect_table_columns_to_match_ordered_list",
    "expect_table_column_count_to_equal",
    "expect_column_values_to_be_of_type",
    "expect_column_values_to_be_in_type_list",
]
ExpectationName = Literal[
    "expect_column_values_to_not_be_null",
    "expect_column_values_to_be_unique",
    "expect_column_values_to_be_between",
    "expect_column_values_to_be_in_set",
    "expect_column_values_to_match_regex",
    "expect_column_min_to_be_between",
    "expect_column_max_to_be_between",
    "expect_column_mean_to_be_between",
    "expect_column_sum_to_be_between",
    "expect_table_row_count_to_be_between",
    "expect_table_row_count_change_to_be_within",
    "expect_column_max_to_be_recent",
    "expect_compound_columns_to_be_unique",
    SchemaExpectationName,
    # business rules
    "expect_column_values_to_not_be_in_set",
    "expect_column_values_to_not_match_regex",
    "expect_column_distinct_values_to_be_in_set",
    "expect_column_distinct_values_to_contain_set",
    "expect_column_value_lengths_to_be_between",
    "expect_column_median_to_be_between",
    "expect_column_quantile_values_to_be_between",
    "expect_column_stdev_to_be_between",
    "expect_column_proportion_of_unique_values_to_be_between",
    "expect_column_pair_values_a_to_be_greater_than_b",
    # referential integrity (Duckherd's; dbt's `relationships` test)
    "expect_column_values_to_exist_in_table",
    # distribution drift against earlier runs (Duckherd's)
    "expect_column_drift_to_be_within",
    "expect_column_kl_divergence_to_previous_runs_to_be_less_than",
]
SUPPORTED_EXPECTATIONS: tuple[str, ...] = get_args(ExpectationName)


class Check(ApiModel):
    """One expectation, in Great Expectations' vocabulary, on one table."""

    table: str = Field(
        pattern=r"^([a-z_][a-z0-9_]{0,62}\.)?[a-z_][a-z0-9_]{0,62}$",
        max_length=127,
        description="Table, `schema.table` (default schema: marts).",
    )
    expectation: ExpectationName = Field(
        description=(
            "Great Expectations expectation type (schema: column existence, column set and "
            "order, column count, DuckDB type names; business rules: nulls, uniqueness, "
            "ranges, sets, regexes, lengths, aggregates, quantiles, column pairs). Beyond "
            "GX's core set: expect_table_row_count_change_to_be_within (kwargs "
            "max_change_pct: change versus the previous run) and "
            "expect_column_max_to_be_recent (kwargs column, max_age: a duration such as 24h), "
            "expect_column_values_to_exist_in_table (a foreign key: kwargs column or "
            "column_list, to_table, to_column or to_column_list, mostly), "
            "expect_column_drift_to_be_within (kwargs column, runs, max_mean_change_pct, "
            "max_stddev_change_pct, max_null_fraction_change: versus the last runs that "
            "passed) and expect_column_kl_divergence_to_previous_runs_to_be_less_than "
            "(kwargs column, threshold, runs, tail_weight_holdout). "
            "See docs/quality.md."
        )
    )
    kwargs: dict[str, Any] = Field(
        default_factory=dict,
        description="Expectation arguments as in GX: column, min_value, max_value, value_set, ...",
    )
    severity: Literal["warn", "error"] = Field(
        default="error", description="error: fails the check stage and blocks publish."
    )
    name: str | None = Field(
        default=None, max_length=253, description="Display name (default: derived)."
    )

    @property
    def display_name(self) -> str:
        if self.name:
            return self.name
        column = self.kwargs.get("column")
        suffix = f".{column}" if column else ""
        return f"{self.table}{suffix}:{self.expectation}"


class Quality(ApiModel):
    """The check stage."""

    checks: list[Check] = Field(
        default_factory=list,
        max_length=500,
        # Generated from the one list, so `kubectl explain datapipeline.spec.quality.checks`
        # names every supported expectation (the enum alone is cut short there).
        description="Expectations. Supported: " + ", ".join(SUPPORTED_EXPECTATIONS) + ".",
    )


# --------------------------------------------------------------------------- KPIs


class Metric(ApiModel):
    """A business KPI: one read-only SQL aggregate over one table (see docs/kpis.md)."""

    name: str = Field(
        pattern=KPI_NAME_PATTERN,
        max_length=63,
        description=(
            "KPI name, unique within the pipeline: Prometheus metric-name rules without the "
            "colon (letters, digits and underscores, not starting with a digit), e.g. "
            "`customer_count`. The `name` label of the `duckherd_kpi` gauge."
        ),
    )
    help: str = Field(
        min_length=1, max_length=253, description="What the KPI means, for people reading it."
    )
    table: str = Field(
        pattern=r"^([a-z_][a-z0-9_]{0,62}\.)?[a-z_][a-z0-9_]{0,62}$",
        max_length=127,
        description="Table the KPI aggregates, `schema.table` (default schema: marts).",
    )
    expression: str = Field(
        min_length=1,
        max_length=MAX_EXPRESSION_LENGTH,
        description=(
            "One read-only SQL aggregate over the table in DuckDB's dialect, whose value is a "
            "number: e.g. `count(*)`, `avg(monthly_ltv)`, `sum(monthly_ltv) FILTER (WHERE "
            "active)`, `max(x) - min(x)`. Every column must be inside an aggregate; no `;`, "
            "queries, subqueries, window functions, aliases, comments or functions with side "
            "effects. All KPIs of a table are computed by one query on a read-only connection. "
            "See docs/kpis.md."
        ),
    )

    @field_validator("expression")
    @classmethod
    def _one_expression(cls, value: str) -> str:
        problem = expression_problem(value)
        if problem:
            raise PydanticCustomError("kpi_expression", problem)
        return value


# --------------------------------------------------------------------------- publish


class RedisTarget(ApiModel):
    """Publish a table to Redis: one JSON document per primary key under a prefix."""

    urlSecretRef: SecretKeyRef = Field(description="Secret key holding a redis:// URL.")
    keyPrefix: str | None = Field(
        default=None,
        max_length=253,
        description="Key prefix (default: duckherd:<namespace>:<pipeline>:<table>).",
    )
    keyColumns: list[Annotated[str, Field(pattern=COLUMN_PATTERN)]] = Field(
        default_factory=list, max_length=8, description="Columns forming the key."
    )
    ttlSeconds: int | None = Field(
        default=None, ge=1, description="Expire published keys after this many seconds."
    )


class PostgresTarget(ApiModel):
    """Publish a table to PostgreSQL with an atomic swap."""

    dsnSecretRef: SecretKeyRef = Field(description="Secret key holding a libpq DSN.")
    schema_: str = Field(
        default="public", alias="schema", pattern=COLUMN_PATTERN, description="Target schema."
    )
    table: str | None = Field(
        default=None, pattern=COLUMN_PATTERN, description="Target table (default: same name)."
    )


class Publish(ApiModel):
    """One mart table to one target."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel("has(self.redis) != has(self.postgres)", "set exactly one of redis, postgres")
            ]
        }
    )

    table: str = Field(
        pattern=r"^([a-z_][a-z0-9_]{0,62}\.)?[a-z_][a-z0-9_]{0,62}$",
        max_length=127,
        description="Mart table, `schema.table` (default schema: marts).",
    )
    redis: RedisTarget | None = Field(default=None, description="Redis target.")
    postgres: PostgresTarget | None = Field(default=None, description="PostgreSQL target.")

    @model_validator(mode="after")
    def _one_target(self) -> Publish:
        _exactly_one(self, ("redis", "postgres"), f"publish[{self.table}]")
        return self


# --------------------------------------------------------------------------- operations


class Freshness(ApiModel):
    """When data counts as late, measured from the last successful load."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "!has(self.warnAfter) || !has(self.errorAfter) || "
                    "duration(self.errorAfter) >= duration(self.warnAfter)",
                    "errorAfter must not be shorter than warnAfter",
                    ".errorAfter",
                )
            ]
        }
    )

    warnAfter: str | None = Field(
        default=None,
        pattern=DURATION_PATTERN,
        max_length=32,
        description="Freshness turns Warn after this duration (Go syntax, e.g. 26h).",
    )
    errorAfter: str | None = Field(
        default=None,
        pattern=DURATION_PATTERN,
        max_length=32,
        description="Freshness turns Stale (DataReady=False) after this duration.",
    )

    @model_validator(mode="after")
    def _ordered(self) -> Freshness:
        warn, error = self.warnAfter, self.errorAfter
        if warn and error and parse_duration(error) < parse_duration(warn):
            raise ValueError("freshness.errorAfter must not be shorter than warnAfter")
        return self


class LineageSettings(ApiModel):
    """OpenLineage events of this pipeline's runs (docs/lineage.md)."""

    enabled: bool | None = Field(
        default=None,
        description=(
            "false: no events. true or unset: events go to `url`, else to the operator's "
            "default endpoint (the chart's `lineage.url`), else nowhere."
        ),
    )
    url: str | None = Field(
        default=None,
        # No `user:password@`: the manifest is not a Secret (use apiKeySecretRef).
        pattern=r"^https?://[^/@\s]+(/\S*)?$",
        max_length=2048,
        description=(
            "OpenLineage HTTP receiver, e.g. Marquez `http://marquez:5000` or DataHub "
            "`http://datahub-gms:8080/openapi/openlineage/` (no credentials: use apiKeySecretRef)."
        ),
    )
    endpoint: str | None = Field(
        default=None,
        max_length=1024,
        description="Path under `url` events are POSTed to (default api/v1/lineage).",
    )
    apiKeySecretRef: SecretKeyRef | None = Field(
        default=None, description="Secret key holding an API key, sent as a Bearer token."
    )
    namespace: str | None = Field(
        default=None,
        max_length=253,
        description="OpenLineage namespace of the jobs (default: the pipeline's namespace).",
    )


class Storage(ApiModel):
    """The warehouse volume."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "!(has(self.existingClaim) && has(self.size))",
                    "existingClaim excludes size",
                    ".size",
                ),
                cel(
                    "!(has(self.existingClaim) && has(self.storageClassName))",
                    "existingClaim excludes storageClassName",
                    ".storageClassName",
                ),
            ]
        }
    )

    size: str | None = Field(
        default=None,
        pattern=r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|k|M|G|T|P)?$",
        max_length=32,
        description="Requested size of the warehouse PVC (default 1Gi).",
    )
    storageClassName: str | None = Field(
        default=None, max_length=253, description="StorageClass (default: the cluster default)."
    )
    existingClaim: str | None = Field(
        default=None,
        pattern=DNS_LABEL_PATTERN,
        max_length=253,
        description="Use this PVC instead of creating `<name>-warehouse`.",
    )
    retainOnDelete: bool = Field(
        default=True,
        description="Keep the created PVC when the pipeline is deleted (default true).",
    )

    @model_validator(mode="after")
    def _claim_or_size(self) -> Storage:
        if self.existingClaim and (self.size or self.storageClassName):
            raise ValueError("storage.existingClaim excludes size and storageClassName")
        return self


BUCKET_PATTERN = r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"
PREFIX_PATTERN = r"^[A-Za-z0-9!_.*'()-]+(/[A-Za-z0-9!_.*'()-]+)*$"


class BackupVolume(ApiModel):
    """Backups on a second PersistentVolumeClaim (never the warehouse's own)."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "!(has(self.existingClaim) && (has(self.size) || has(self.storageClassName)))",
                    "existingClaim excludes size and storageClassName",
                ),
            ]
        }
    )

    existingClaim: str | None = Field(
        default=None,
        pattern=DNS_LABEL_PATTERN,
        max_length=253,
        description="Use this PVC instead of creating `<name>-backups`.",
    )
    size: str | None = Field(
        default=None,
        pattern=r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|k|M|G|T|P)?$",
        max_length=32,
        description="Size of the `<name>-backups` PVC the operator creates (default 1Gi). "
        "It is kept when the pipeline is deleted.",
    )
    storageClassName: str | None = Field(
        default=None, max_length=253, description="StorageClass of the created PVC."
    )

    @model_validator(mode="after")
    def _claim_or_size(self) -> BackupVolume:
        if self.existingClaim and (self.size or self.storageClassName):
            raise ValueError("backup.volume.existingClaim excludes size and storageClassName")
        return self


class BackupBucket(ApiModel):
    """Backups in an S3-compatible bucket; the credentials come from a Secret only."""

    endpoint: str = Field(
        pattern=r"^https?://",
        max_length=2048,
        description="The S3 API endpoint URL, e.g. https://s3.eu-central-1.amazonaws.com or "
        "http://seaweedfs.storage:8333.",
    )
    bucket: str = Field(pattern=BUCKET_PATTERN, max_length=63, description="Bucket name.")
    prefix: str | None = Field(
        default=None,
        pattern=PREFIX_PATTERN,
        max_length=512,
        description="Key prefix; backups go under `<prefix>/<namespace>/<pipeline>/<id>/`.",
    )
    region: str = Field(
        default="us-east-1", max_length=63, description="Region used for request signing."
    )
    accessKeyIdSecretRef: SecretKeyRef = Field(description="Secret key holding the access key id.")
    secretAccessKeySecretRef: SecretKeyRef = Field(
        description="Secret key holding the secret access key."
    )


class Backup(ApiModel):
    """Scheduled snapshots of the warehouse (a checkpointed copy of the DuckDB file, taken
    under the writer's lock) to a second volume or an S3-compatible bucket."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel("has(self.volume) != has(self.s3)", "set exactly one of volume, s3")
            ]
        }
    )

    schedule: str = Field(
        max_length=253,
        json_schema_extra={"pattern": CRON_PATTERN},
        description="Cron schedule of the backup CronJob (time zone: spec.timeZone).",
    )
    keep: int = Field(
        default=7, ge=1, le=100, description="Backups kept; older ones are deleted after a backup."
    )
    volume: BackupVolume | None = Field(default=None, description="A second volume.")
    s3: BackupBucket | None = Field(default=None, description="An S3-compatible bucket.")

    @field_validator("schedule")
    @classmethod
    def _valid_schedule(cls, value: str) -> str:
        return validate_cron(value)

    @model_validator(mode="after")
    def _one_destination(self) -> Backup:
        _exactly_one(self, ("volume", "s3"), "backup")
        return self


class History(ApiModel):
    """How much run history `_duckherd` keeps (runs, check results, column profiles)."""

    keepRuns: int = Field(
        default=100,
        ge=2,
        le=100_000,
        description=(
            "Keep the records of the newest N runs in _duckherd.runs, checks and profiles; "
            "older ones are pruned at the end of ingest. Must exceed every drift check's "
            "`runs`."
        ),
    )


class EnvVar(ApiModel):
    """An environment variable for stage pods (a plain value or a Kubernetes valueFrom)."""

    name: str = Field(pattern=r"^[-._a-zA-Z][-._a-zA-Z0-9]*$", max_length=253, description="Name.")
    value: str | None = Field(default=None, description="Value.")
    valueFrom: dict[str, Any] | None = Field(
        default=None, description="A Kubernetes EnvVarSource (secretKeyRef, configMapKeyRef, ...)."
    )


def _quantity_text(value: object) -> object:
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


def _valid_quantity(value: str) -> str:
    if not re.fullmatch(QUANTITY_PATTERN, value):
        raise ValueError(
            f"invalid quantity {value!r}: use a Kubernetes quantity such as 2, 500m or 1Gi"
        )
    return value


Quantity = Annotated[
    str,
    BeforeValidator(_quantity_text),
    AfterValidator(_valid_quantity),
    WithJsonSchema(
        {
            "x-kubernetes-int-or-string": True,
            "pattern": QUANTITY_PATTERN,
            "description": "A Kubernetes quantity (e.g. 2, 500m, 1Gi).",
        }
    ),
]


class Resources(ApiModel):
    """Compute resources for stage pods."""

    requests: dict[str, Quantity] = Field(
        default_factory=dict, description="Requests (cpu, memory): Kubernetes quantities."
    )
    limits: dict[str, Quantity] = Field(
        default_factory=dict, description="Limits (cpu, memory): Kubernetes quantities."
    )


class PodOverrides(ApiModel):
    """What stage pods run as and where."""

    image: str | None = Field(
        default=None, max_length=1024, description="Stage image (default: the operator's)."
    )
    imagePullPolicy: Literal["Always", "IfNotPresent", "Never"] | None = Field(
        default=None, description="Image pull policy (default: IfNotPresent)."
    )
    resources: Resources | None = Field(
        default=None,
        description=(
            "Requests and limits of the stage containers. Replaces the operator's default as "
            "a whole (chart value stagePods.resources; built in: requests cpu 250m, memory "
            "512Mi, limit memory 2Gi)."
        ),
    )
    nodeSelector: dict[str, str] = Field(default_factory=dict, description="Node selector.")
    tolerations: list[dict[str, Any]] = Field(
        default_factory=list, max_length=32, description="Kubernetes tolerations."
    )
    serviceAccountName: str | None = Field(
        default=None,
        pattern=DNS_LABEL_PATTERN,
        max_length=253,
        description="Service account (default: none mounted, stage pods need no API access).",
    )
    env: list[EnvVar] = Field(default_factory=list, max_length=128, description="Extra env.")


def validate_cron(value: str) -> str:
    if not re.fullmatch(CRON_PATTERN, value) or not croniter.is_valid(value):
        raise ValueError(
            f"invalid cron expression {value!r}: use five fields (minute hour day-of-month "
            "month day-of-week) or a macro such as @daily"
        )
    try:
        croniter(value, datetime(2000, 1, 1, tzinfo=UTC)).get_next(datetime)
    except CroniterBadDateError:
        raise ValueError(f"invalid cron expression {value!r}: it never fires") from None
    return value


class DataPipelineSpec(ApiModel):
    """A data pipeline: sources into DuckDB, dbt, checks, publishing, on a schedule."""

    # Unique source and metric names are enforced at admission by the list-map keys on
    # `sources` and `metrics`.

    schedule: str = Field(
        max_length=253,
        json_schema_extra={"pattern": CRON_PATTERN},
        description=(
            "Cron schedule of the ingest stage (e.g. `0 6 * * *`): five fields or a macro "
            "such as `@daily`; the time zone goes in timeZone."
        ),
    )
    timeZone: str | None = Field(
        default=None, max_length=253, description="IANA time zone of the schedule (default UTC)."
    )
    suspend: bool = Field(default=False, description="Stop scheduling new runs.")
    startingDeadlineSeconds: int | None = Field(
        default=None, ge=0, description="Skip a run that could not start within this many seconds."
    )
    sources: list[Source] = Field(min_length=1, max_length=64, description="Where data comes from.")
    transform: Transform | None = Field(default=None, description="dbt transform stage.")
    quality: Quality | None = Field(default=None, description="Great Expectations checks.")
    publish: list[Publish] = Field(
        default_factory=list, max_length=64, description="Marts to publish after checks pass."
    )
    freshness: Freshness | None = Field(default=None, description="Freshness thresholds.")
    metrics: list[Metric] = Field(
        default_factory=list,
        max_length=32,
        description=(
            "Business KPIs: SQL aggregates over tables, computed by the check stage after "
            "every run, in status.kpis and the duckherd_kpi gauge (docs/kpis.md)."
        ),
    )
    lineage: LineageSettings | None = Field(
        default=None, description="OpenLineage events per run (default: the operator's)."
    )
    storage: Storage = Field(default_factory=Storage, description="The warehouse volume.")
    backup: Backup | None = Field(default=None, description="Scheduled warehouse backups.")
    history: History = Field(
        default_factory=History, description="How much run history _duckherd keeps."
    )
    pod: PodOverrides = Field(default_factory=PodOverrides, description="Stage pod overrides.")
    backoffLimit: int = Field(default=1, ge=0, le=10, description="Retries of a failed stage Job.")
    activeDeadlineSeconds: int | None = Field(
        default=None, ge=1, description="Kill a stage Job running longer than this."
    )
    successfulJobsHistoryLimit: int = Field(
        default=3, ge=0, le=100, description="Finished Jobs kept per stage."
    )
    failedJobsHistoryLimit: int = Field(
        default=3, ge=0, le=100, description="Failed Jobs kept per stage."
    )

    @field_validator("schedule")
    @classmethod
    def _valid_schedule(cls, value: str) -> str:
        return validate_cron(value)

    @field_validator("timeZone")
    @classmethod
    def _valid_time_zone(cls, value: str | None) -> str | None:
        if value is None:
            return value
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as error:
            raise ValueError(f"unknown time zone {value!r}") from error
        return value

    @model_validator(mode="after")
    def _unique_names(self) -> DataPipelineSpec:
        for field, items in (("sources", self.sources), ("metrics", self.metrics)):
            duplicates = _duplicates([item.name for item in items])
            if duplicates:
                raise ValueError(f"{field}: duplicate names {', '.join(duplicates)}")
        return self

    @model_validator(mode="after")
    def _history_covers_drift_checks(self) -> DataPipelineSpec:
        wanted = [
            check.kwargs["runs"]
            for check in (self.quality.checks if self.quality else [])
            if isinstance(check.kwargs.get("runs"), int)
        ]
        if wanted and self.history.keepRuns <= max(wanted):
            raise ValueError(
                f"history.keepRuns {self.history.keepRuns} must exceed the largest drift "
                f"check `runs` ({max(wanted)}): pruning would remove the runs it compares with"
            )
        return self

    def stages(self) -> list[Stage]:
        """The stages this pipeline runs, in order."""
        stages: list[Stage] = ["ingest"]
        if self.transform is not None:
            stages.append("transform")
        if (self.quality is not None and self.quality.checks) or self.metrics:
            stages.append("check")
        if self.publish:
            stages.append("publish")
        return stages


# --------------------------------------------------------------------------- status


class Condition(ApiModel):
    """A metav1.Condition."""

    type: str = Field(max_length=316, description="Condition type (CamelCase).")
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    observedGeneration: int | None = Field(
        default=None, ge=0, description="The .metadata.generation this condition is based on."
    )
    lastTransitionTime: str = Field(description="When status last flipped (RFC 3339).")
    reason: str = Field(max_length=1024, description="CamelCase reason.")
    message: str = Field(default="", max_length=32768, description="Human readable details.")


class StageResult(ApiModel):
    """One stage of a run."""

    stage: Stage = Field(description="ingest, transform, check or publish.")
    job: str | None = Field(default=None, description="Name of the stage Job.")
    result: Literal[
        "Pending", "Waiting", "Running", "Succeeded", "Failed", "Blocked", "Skipped"
    ] = Field(
        description=(
            "Where the stage is: Pending (not started yet), Waiting (its Job exists but its pod "
            "waits for a node, e.g. not enough CPU or memory free; the message says why), "
            "Running, Succeeded, Failed, Blocked (publish held back by failed checks), Skipped."
        )
    )
    startTime: str | None = Field(default=None, description="When the Job started.")
    completionTime: str | None = Field(default=None, description="When the Job finished.")
    durationSeconds: float | None = Field(default=None, description="Seconds the stage took.")
    rows: int | None = Field(default=None, description="Rows the stage loaded / built / published.")
    peakMemoryBytes: int | None = Field(
        default=None, description="Peak resident memory of the stage's process, in bytes."
    )
    cpuSeconds: float | None = Field(
        default=None, description="CPU time (user + system) the stage used, in seconds."
    )
    lineageEvents: int | None = Field(
        default=None,
        description="OpenLineage events the stage delivered (absent while lineage is off).",
    )
    lineageError: str | None = Field(
        default=None,
        description=(
            "Why the stage's OpenLineage events stopped (the receiver failed or did not answer "
            "in time). The stage itself is not affected."
        ),
    )
    message: str | None = Field(default=None, description="Error or summary message.")


class RunStatus(ApiModel):
    """A run: the stage Jobs that share one run id."""

    id: str = Field(description="Run id (label duckherd.io/run-id on its Jobs).")
    trigger: Literal["Schedule", "Manual"] = Field(description="Schedule or Manual.")
    result: Literal["Running", "Succeeded", "Failed", "Blocked"] = Field(
        description="Running, Succeeded, Failed, or Blocked (publish held back by checks)."
    )
    startTime: str | None = Field(default=None, description="When the first stage started.")
    completionTime: str | None = Field(default=None, description="When the run ended.")
    stages: list[StageResult] = Field(default_factory=list, description="Per-stage results.")


class TableStatus(ApiModel):
    """Rows in one warehouse table after the last run that touched it."""

    name: str = Field(description="`schema.table`.")
    rows: int = Field(description="Row count.")
    loadedAt: str | None = Field(default=None, description="Last load time (RFC 3339).")


class FreshnessStatus(ApiModel):
    """How late the data is."""

    state: Literal["Fresh", "Warn", "Stale", "Unknown"] = Field(
        description="Against spec.freshness."
    )
    lastLoadedAt: str | None = Field(default=None, description="Last successful ingest.")


class CheckFailure(ApiModel):
    """A failed expectation."""

    name: str = Field(description="Check name.")
    severity: Literal["warn", "error"] = Field(description="Severity.")
    observed: str | None = Field(default=None, description="Observed value, abbreviated.")


class QualityStatus(ApiModel):
    """Results of the last check stage."""

    passed: int = Field(default=0, description="Expectations met.")
    failed: int = Field(default=0, description="error-severity expectations not met.")
    warned: int = Field(default=0, description="warn-severity expectations not met.")
    checkedAt: str | None = Field(default=None, description="When the checks ran.")
    runId: str | None = Field(default=None, description="Run of the checks.")
    failures: list[CheckFailure] = Field(default_factory=list, description="What failed.")


class PublishedStatus(ApiModel):
    """One published table on one target."""

    table: str = Field(description="Mart table.")
    target: str = Field(description="redis or postgres (with the target name).")
    rows: int = Field(description="Rows published.")
    runId: str | None = Field(default=None, description="Run that published.")
    publishedAt: str | None = Field(default=None, description="When.")


class KpiStatus(ApiModel):
    """The latest value of one business KPI (`spec.metrics[]`)."""

    name: str = Field(description="KPI name (spec.metrics[].name).")
    table: str = Field(description="Table it aggregates, `schema.table`.")
    value: float | None = Field(
        default=None,
        description=(
            "The value; null when the aggregate is NULL (e.g. avg over no rows) or it could "
            "not be computed (see message)."
        ),
    )
    runId: str | None = Field(default=None, description="Run whose check stage computed it.")
    computedAt: str | None = Field(default=None, description="When it was computed (RFC 3339).")
    message: str | None = Field(
        default=None, description="Why the value is null, or the error that stopped it."
    )


class NotificationStatus(ApiModel):
    """The last webhook notification about this pipeline (docs/notifications.md). Kept in
    status so that a restarted operator does not send a transition again; written by the
    operator's notifier alone."""

    state: Literal["Failing", "Recovered"] = Field(
        description=(
            "Failing: DataReady turned False for a fault (reason); Recovered: it turned True "
            "again after a Failing notification."
        )
    )
    reason: str = Field(
        description=(
            "The DataReady reason notified: RunFailed, ChecksFailed, PublishBlocked, "
            "PublishFailed or Stale; RunSucceeded on recovery."
        )
    )
    runId: str | None = Field(default=None, description="The run the notification is about.")
    time: str = Field(description="When the transition was notified (RFC 3339).")
    delivered: bool = Field(
        description="Whether the receiver accepted it (False: every attempt failed)."
    )
    message: str | None = Field(
        default=None, description="Why the delivery failed (never the webhook URL)."
    )


class WarehouseStatus(ApiModel):
    """The warehouse file and its volume, as the latest stage measured them."""

    sizeBytes: int = Field(description="The DuckDB file and its write-ahead log, in bytes.")
    capacityBytes: int = Field(description="Capacity of the volume holding it, in bytes.")
    availableBytes: int = Field(description="Bytes still available on that volume.")
    measuredAt: str | None = Field(default=None, description="When (RFC 3339).")


class BackupStatus(ApiModel):
    """One backup at the destination."""

    id: str = Field(description="Backup id: the value for the duckherd.io/restore annotation.")
    time: str = Field(description="When the snapshot was taken (RFC 3339).")
    sizeBytes: int = Field(description="Size of the snapshot in bytes.")
    runId: str | None = Field(
        default=None, description="The newest run whose data the snapshot holds."
    )
    location: str = Field(description="Where it is (a path on the backup volume, or an s3:// URL).")


class BackupsStatus(ApiModel):
    """The backups and the latest backup Job."""

    lastJob: str | None = Field(default=None, description="The latest backup Job.")
    lastResult: Literal["Running", "Succeeded", "Failed"] | None = Field(
        default=None, description="How the latest backup Job ended."
    )
    lastTime: str | None = Field(default=None, description="When it ended (RFC 3339).")
    message: str | None = Field(default=None, description="Its error, if it failed.")
    pruned: list[str] = Field(
        default_factory=list, description="Backups the latest Job deleted (beyond `keep`)."
    )
    items: list[BackupStatus] = Field(
        default_factory=list, description="The backups kept, newest first."
    )


class RestoreStatus(ApiModel):
    """The latest restore requested with the duckherd.io/restore annotation."""

    backupId: str = Field(description="The backup restored.")
    job: str | None = Field(default=None, description="The restore Job.")
    result: Literal["Pending", "Running", "Succeeded", "Failed"] = Field(
        description="Where the restore is."
    )
    startTime: str | None = Field(default=None, description="When the Job started.")
    completionTime: str | None = Field(default=None, description="When it ended.")
    runId: str | None = Field(
        default=None, description="The newest run in the restored warehouse (its cursors)."
    )
    message: str | None = Field(default=None, description="What happened, or the error.")


class RetentionStatus(ApiModel):
    """What the latest pruning removed (spec.sources[].retainFor / keepLoads, spec.history)."""

    runId: str | None = Field(default=None, description="The run whose ingest pruned.")
    prunedAt: str | None = Field(default=None, description="When (RFC 3339).")
    rowsPruned: int = Field(default=0, description="Rows pruned in all by that run.")
    tables: dict[str, int] = Field(
        default_factory=dict, description="Rows pruned per table (raw and _duckherd)."
    )


class DataPipelineStatus(ApiModel):
    """What the operator observed. The contract is docs/status.md: `Ready`, `Stalled` and
    `Reconciling` tell deployment health (what kstatus, Flux and Argo CD read); `DataReady`,
    `Fresh`, `ChecksPassed` and `Published` tell data health."""

    observedGeneration: int | None = Field(
        default=None,
        description=(
            "The .metadata.generation the operator has acted on (children applied, or the "
            "problem that stops it found). Differs from .metadata.generation while a spec "
            "change is not yet acted on."
        ),
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        description=(
            "Deployment health: Ready (True once the children of observedGeneration are "
            "applied and its pods can start; False with the cause otherwise), Stalled (present "
            "only while True: the operator cannot go on without a change, e.g. an invalid "
            "spec, a missing Secret, an image that cannot be pulled, a child the API server "
            "refuses), Reconciling (present only while True: a transient error is being "
            "retried). Data health: DataReady (True when the last finished run succeeded and "
            "the data is not stale; `kubectl wait --for=condition=DataReady` waits for good "
            "data), Fresh, ChecksPassed, Published (with publish targets), Suspended."
        ),
    )
    lastRun: RunStatus | None = Field(default=None, description="The latest run.")
    lastSuccessfulRun: RunStatus | None = Field(
        default=None, description="The latest run that succeeded."
    )
    lastSuccessfulTime: str | None = Field(
        default=None, description="When the latest successful run ended (RFC 3339)."
    )
    lastFailureTime: str | None = Field(
        default=None,
        description="When the latest failed or publish-blocked run ended (RFC 3339).",
    )
    nextScheduleTime: str | None = Field(default=None, description="Next scheduled ingest.")
    tables: list[TableStatus] = Field(default_factory=list, description="Rows per table.")
    totalRows: int | None = Field(
        default=None,
        description=(
            "Rows in the pipeline's final tables (the ROWS column): the tables in the `marts` "
            "schema when the pipeline has a transform, else the `raw` tables ingest writes. "
            "Each table's own count is in `tables`."
        ),
    )
    freshness: FreshnessStatus | None = Field(default=None, description="Freshness.")
    quality: QualityStatus | None = Field(default=None, description="Quality summary.")
    published: list[PublishedStatus] = Field(default_factory=list, description="Publish results.")
    kpis: list[KpiStatus] = Field(
        default_factory=list,
        description=(
            "Business KPIs (spec.metrics) as the latest check stage computed them; the "
            "source of the duckherd_kpi gauge."
        ),
    )
    notification: NotificationStatus | None = Field(
        default=None,
        description=(
            "The last webhook notification (only with notifications configured in the chart)."
        ),
    )
    warehouse: WarehouseStatus | None = Field(
        default=None,
        description="The warehouse's size and its volume's capacity and free space.",
    )
    backups: BackupsStatus | None = Field(
        default=None, description="Backups (spec.backup) and the latest backup Job."
    )
    restore: RestoreStatus | None = Field(
        default=None, description="The latest restore (annotation duckherd.io/restore)."
    )
    retention: RetentionStatus | None = Field(
        default=None, description="What the latest pruning removed."
    )


class ObjectMeta(BaseModel):
    """The parts of metadata Duckherd reads."""

    model_config = ConfigDict(extra="allow")

    name: str
    namespace: str | None = None


def iter_secret_refs(spec: DataPipelineSpec, stage: str | None = None) -> list[SecretKeyRef]:
    """The Secret references a stage (or the backup / restore task) uses (all of them without
    `stage`). The operator maps exactly these into that pod's env: a stage never sees another
    stage's secrets, and a missing publish Secret does not stop ingest."""
    found: list[SecretKeyRef] = []
    # Every stage emits lineage, so each gets the lineage API key.
    parts: dict[str, list[object]] = {
        "ingest": [spec.sources],
        "publish": [spec.publish],
        "backup": [spec.backup],
        "restore": [spec.backup],
    }
    root: object = spec if stage is None else [*parts.get(stage, []), spec.lineage]

    def walk(node: object) -> None:
        if isinstance(node, SecretKeyRef):
            if node not in found:
                found.append(node)
        elif isinstance(node, BaseModel):
            for name in type(node).model_fields:
                walk(getattr(node, name))
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(root)
    return found


class DataPipeline(BaseModel):
    """A whole manifest (used by local mode and the jobs)."""

    model_config = ConfigDict(extra="allow")

    apiVersion: Literal["duckherd.io/v1alpha1"]
    kind: Literal["DataPipeline"]
    metadata: ObjectMeta
    spec: DataPipelineSpec
