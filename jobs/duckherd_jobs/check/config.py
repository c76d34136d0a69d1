"""Checks from the spec, validated in Great Expectations' own vocabulary.

Core expectations are validated by instantiating GX's expectation class with the spec's
kwargs: an unknown or mistyped argument gets GX's own verdict, prefixed with the check it is
in. The two Duckherd expectations GX lacks are validated by small models of the same shape.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import duckdb
import great_expectations.expectations as gx_expectations
from great_expectations.expectations.expectation_configuration import ExpectationConfiguration
from great_expectations.expectations.metadata_types import FailureSeverity
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from duckherd.api import Check, parse_duration
from duckherd.errors import PipelineError
from duckherd.validation import describe_validation_errors
from duckherd_jobs.check.drift import DRIFT, KL_DIVERGENCE
from duckherd_jobs.check.referential import EXIST_IN_TABLE
from duckherd_jobs.check.schema import normalize_type
from duckherd_jobs.sql import table_name

ROW_COUNT_CHANGE = "expect_table_row_count_change_to_be_within"
MAX_RECENT = "expect_column_max_to_be_recent"
GX_SEVERITY = {"error": FailureSeverity.CRITICAL, "warn": FailureSeverity.WARNING}


class CheckConfigError(PipelineError, ValueError):
    """A check whose expectation arguments are invalid; the message names the check and field."""


class _RowCountChangeKwargs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_change_pct: float = Field(ge=0)


class _MaxRecentKwargs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    column: str
    max_age: str

    @field_validator("max_age")
    @classmethod
    def _duration(cls, value: str) -> str:
        parse_duration(value)
        return value


class _ExistInTableKwargs(BaseModel):
    """A foreign key: `column` (or `column_list`) of this table -> `to_column` (or
    `to_column_list`, default: the same names) of `to_table`."""

    model_config = ConfigDict(extra="forbid")

    column: str | None = Field(default=None, min_length=1)
    column_list: list[str] | None = Field(default=None, min_length=1)
    to_table: str = Field(pattern=r"^([a-z_][a-z0-9_]{0,62}\.)?[a-z_][a-z0-9_]{0,62}$")
    to_column: str | None = Field(default=None, min_length=1)
    to_column_list: list[str] | None = Field(default=None, min_length=1)
    mostly: float = Field(default=1.0, ge=0, le=1)

    @model_validator(mode="after")
    def _one_key(self) -> _ExistInTableKwargs:
        if (self.column is None) == (self.column_list is None):
            raise ValueError("give either column or column_list")
        if self.column_list is None and self.to_column_list is not None:
            raise ValueError("to_column_list goes with column_list (use to_column)")
        if self.column_list is not None:
            if self.to_column is not None:
                raise ValueError("to_column goes with column (use to_column_list)")
            if self.to_column_list is not None and len(self.to_column_list) != len(
                self.column_list
            ):
                raise ValueError("to_column_list must name as many columns as column_list")
        return self


class _DriftKwargs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    column: str = Field(min_length=1)
    runs: int = Field(default=5, ge=1, le=100)
    max_mean_change_pct: float | None = Field(default=None, ge=0)
    max_stddev_change_pct: float | None = Field(default=None, ge=0)
    max_null_fraction_change: float | None = Field(default=None, ge=0, le=1)

    @model_validator(mode="after")
    def _some_limit(self) -> _DriftKwargs:
        limits = (self.max_mean_change_pct, self.max_stddev_change_pct)
        if all(limit is None for limit in (*limits, self.max_null_fraction_change)):
            raise ValueError(
                "give at least one of max_mean_change_pct, max_stddev_change_pct, "
                "max_null_fraction_change"
            )
        return self


class _KlDivergenceKwargs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    column: str = Field(min_length=1)
    threshold: float = Field(ge=0)
    runs: int = Field(default=5, ge=1, le=100)
    tail_weight_holdout: float = Field(default=0.0, ge=0, le=1)


_DUCKHERD_KWARGS: dict[str, type[BaseModel]] = {
    DRIFT: _DriftKwargs,
    KL_DIVERGENCE: _KlDivergenceKwargs,
    ROW_COUNT_CHANGE: _RowCountChangeKwargs,
    MAX_RECENT: _MaxRecentKwargs,
    EXIST_IN_TABLE: _ExistInTableKwargs,
}

# Success arguments whose GX defaults the pushdown needs even when the spec leaves them out.
_GX_DEFAULTS = (
    "mostly",
    "strict_min",
    "strict_max",
    "exact_match",
    "or_equal",
    "ignore_row_if",
    "column_index",
)


@dataclass(frozen=True)
class PlannedCheck:
    """One check, its arguments normalized (GX's types and defaults) and its GX configuration."""

    position: int
    check: Check
    table: str
    kwargs: dict[str, Any]
    configuration: Any

    @property
    def name(self) -> str:
        return self.check.display_name


def expectation_class(expectation: str) -> Any:
    """GX's class for a snake_case expectation type, or None when GX has no such expectation."""
    class_name = "".join(expectation.split("_")).lower()  # GX spells some KL, some Kl
    return next(
        (
            getattr(gx_expectations, name)
            for name in dir(gx_expectations)
            if name.lower() == class_name and name.startswith("Expect")
        ),
        None,
    )


def _where(position: int, check: Check) -> str:
    return f"quality.checks[{position}] ({check.display_name})"


def _check_type_names(position: int, check: Check, kwargs: dict[str, Any]) -> None:
    """Type expectations name DuckDB types (see `schema.py`): an unknown name is a spec error."""
    names = [kwargs["type_"]] if "type_" in kwargs else list(kwargs.get("type_list") or [])
    for name in names:
        try:
            normalize_type(str(name))
        except ValueError as error:
            field = "type_" if "type_" in kwargs else "type_list"
            raise CheckConfigError(f"{_where(position, check)}: kwargs.{field}: {error}") from None


def _check_regex(position: int, check: Check, regex: str) -> None:
    """DuckDB's regex dialect (RE2) is what runs, so it is what must accept the pattern."""
    try:
        duckdb.execute("SELECT regexp_matches('', ?)", [regex])
    except duckdb.Error as error:
        raise CheckConfigError(
            f"{_where(position, check)}: kwargs.regex: not a valid regular expression "
            f"(RE2 syntax): {error}"
        ) from None


def _gx_kwargs(position: int, check: Check, cls: Any) -> tuple[dict[str, Any], Any]:
    try:
        expectation = cls(**check.kwargs)
    except Exception as error:  # GX raises pydantic v1 ValidationError and a few plain ones
        errors = getattr(error, "errors", None)
        detail = describe_validation_errors(errors(), "kwargs") if callable(errors) else str(error)
        raise CheckConfigError(f"{_where(position, check)}: {detail}") from None
    kwargs = dict(expectation.configuration.kwargs)
    for name in _GX_DEFAULTS:
        if hasattr(expectation, name):
            kwargs.setdefault(name, getattr(expectation, name))
    configuration = ExpectationConfiguration(
        type=check.expectation,
        kwargs=dict(expectation.configuration.kwargs),
        severity=GX_SEVERITY[check.severity],
    )
    return kwargs, configuration


def _duckherd_kwargs(position: int, check: Check) -> tuple[dict[str, Any], Any]:
    try:
        model = _DUCKHERD_KWARGS[check.expectation].model_validate(check.kwargs)
    except ValidationError as error:
        details = describe_validation_errors(error.errors(), "kwargs")
        raise CheckConfigError(f"{_where(position, check)}: {details}") from None
    kwargs = model.model_dump(exclude_none=True)
    configuration = ExpectationConfiguration(
        type=check.expectation, kwargs=dict(kwargs), severity=GX_SEVERITY[check.severity]
    )
    return kwargs, configuration


def plan_checks(checks: list[Check]) -> list[PlannedCheck]:
    """Validate every check's arguments up front: a bad one fails the stage before any work."""
    planned = []
    for position, check in enumerate(checks):
        if check.expectation in _DUCKHERD_KWARGS:
            kwargs, configuration = _duckherd_kwargs(position, check)
        else:
            cls = expectation_class(check.expectation)
            if cls is None:
                raise CheckConfigError(
                    f"{_where(position, check)}: {check.expectation} is not a Great "
                    "Expectations expectation"
                )
            kwargs, configuration = _gx_kwargs(position, check, cls)
            if "regex" in kwargs:
                _check_regex(position, check, str(kwargs["regex"]))
            if "type_" in kwargs or "type_list" in kwargs:
                _check_type_names(position, check, kwargs)
        planned.append(
            PlannedCheck(position, check, table_name(check.table), kwargs, configuration)
        )
    return planned
