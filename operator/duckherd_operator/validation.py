"""Validation at the door: a DataPipeline object in, a Pipeline or a Problem naming the field out.

Pure: reads the object and the process environment (the stage image and the stage pods'
default resources), calls no API. A fleet is parsed again and again (every Job event, every
resync round), so the result is kept per pipeline until its spec, generation or uid changes.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from pydantic import BaseModel, ValidationError

from duckherd import __version__
from duckherd.api import MAX_PIPELINE_NAME, DataPipelineSpec, Resources
from duckherd.contract import (
    ENV_IMAGE,
    ENV_IMAGE_PULL_POLICY,
    ENV_LINEAGE_API_KEY_SECRET,
    ENV_LINEAGE_ENDPOINT,
    ENV_LINEAGE_NAMESPACE,
    ENV_LINEAGE_TIMEOUT,
    ENV_LINEAGE_URL,
    ENV_STAGE_RESOURCES,
)
from duckherd.status import Problem
from duckherd.validation import describe_validation_errors
from duckherd_operator.builders import DEFAULT_STAGE_RESOURCES, LineageDefaults, Pipeline


@lru_cache(maxsize=8)
def _resources_from(text: str) -> dict[str, dict[str, str]]:
    try:
        resources = Resources.model_validate_json(text)
    except ValidationError as error:  # the JSON itself or a field
        details = describe_validation_errors(error.errors(), "resources")
        raise ValueError(f"{ENV_STAGE_RESOURCES}: {details}") from None
    dumped: dict[str, dict[str, str]] = resources.model_dump(mode="json", exclude_defaults=True)
    return dumped


def stage_resources() -> dict[str, dict[str, str]]:
    """The stage pods' default resources: DUCKHERD_STAGE_RESOURCES (JSON), else the built-in
    default. Raises ValueError naming the variable when it is not valid."""
    text = os.environ.get(ENV_STAGE_RESOURCES, "").strip()
    return _resources_from(text) if text else DEFAULT_STAGE_RESOURCES


def stage_image() -> tuple[str, str]:
    image = os.environ.get(ENV_IMAGE, f"duckherd:{__version__}")
    return image, os.environ.get(ENV_IMAGE_PULL_POLICY, "IfNotPresent")


def lineage_defaults() -> LineageDefaults:
    """The chart's `lineage` values, as the Deployment passes them to the operator."""
    return LineageDefaults(
        url=os.environ.get(ENV_LINEAGE_URL, ""),
        endpoint=os.environ.get(ENV_LINEAGE_ENDPOINT, ""),
        namespace=os.environ.get(ENV_LINEAGE_NAMESPACE, ""),
        timeout_seconds=os.environ.get(ENV_LINEAGE_TIMEOUT, ""),
        api_key_secret=os.environ.get(ENV_LINEAGE_API_KEY_SECRET, ""),
    )


# Hand-written: pydantic keeps a mutable set of the fields given (`model_fields_set`) in every
# model instance, 28 of them per parse of the example's spec: 9.6 KiB of its 29 KiB, and a
# fleet keeps a parse per pipeline (about 9 MiB at N = 1,000, docs/fleet.md). The parsed spec
# is never assigned to, copied with updates or dumped with `exclude_unset` (each needs a
# mutable set, and fails loudly on a frozenset), so each model keeps one shared frozenset of
# the field names it was given instead.
_fields_sets: dict[frozenset[str], frozenset[str]] = {}


def share_fields_sets(value: Any) -> None:
    """Give every model in `value` (models, lists, dicts of them) a shared frozenset."""
    if isinstance(value, BaseModel):
        fields_set = frozenset(value.model_fields_set)
        shared = _fields_sets.setdefault(fields_set, fields_set)
        object.__setattr__(value, "__pydantic_fields_set__", shared)
        for name in type(value).model_fields:
            share_fields_sets(getattr(value, name))
    elif isinstance(value, (list, tuple)):
        for item in value:
            share_fields_sets(item)
    elif isinstance(value, dict):
        for item in value.values():
            share_fields_sets(item)


@dataclass(frozen=True)
class Parsed:
    pipeline: Pipeline | None
    problem: Problem | None


def _parse(body: dict[str, Any]) -> Parsed:
    metadata = body["metadata"]
    name = metadata["name"]
    if len(name) > MAX_PIPELINE_NAME:
        return Parsed(
            None,
            Problem(
                "InvalidName",
                f"metadata.name: {len(name)} characters; at most {MAX_PIPELINE_NAME} "
                "(stage CronJob names derive from it)",
            ),
        )
    try:
        spec = DataPipelineSpec.model_validate(body.get("spec") or {})
    except ValidationError as error:
        details = describe_validation_errors(error.errors(), "spec")
        return Parsed(None, Problem("InvalidSpec", details))
    share_fields_sets(spec)
    image, policy = stage_image()
    return Parsed(
        Pipeline(
            name=name,
            namespace=metadata["namespace"],
            uid=metadata["uid"],
            generation=int(metadata.get("generation") or 0),
            spec=spec,
            image=image,
            image_pull_policy=policy,
            default_resources=stage_resources(),
            lineage=lineage_defaults(),
        ),
        None,
    )


_Key = tuple[str | None, str]
# Per pipeline: what the last parse was of, and its result. Entries of deleted pipelines are
# dropped by forget_parsed (the resync calls it with the pipelines it still sees).
_parsed: dict[_Key, tuple[tuple[Any, ...], Parsed]] = {}


def _fingerprint(body: dict[str, Any]) -> tuple[Any, ...]:
    """What a parse depends on; the spec by a digest of its JSON (kept for every pipeline of
    a fleet, the JSON itself would be as large again as the spec's text)."""
    metadata = body["metadata"]
    spec = json.dumps(body.get("spec") or {}, sort_keys=True).encode()
    return (
        metadata.get("uid"),
        metadata.get("generation"),
        hashlib.blake2b(spec, digest_size=16).digest(),
        stage_image(),
        os.environ.get(ENV_STAGE_RESOURCES, ""),
    )


# The key under which the pipeline cache (handlers/caches.py) keeps a pipeline's parse in
# place of its spec: such a body is answered with it.
CACHED_PARSE = "parsed"


def parse_pipeline(body: dict[str, Any]) -> Parsed:
    """Validate a DataPipeline object at the door; a Problem names the field. The same
    object (uid, generation, spec, operator environment) is parsed once."""
    cached = body.get(CACHED_PARSE)
    if isinstance(cached, Parsed):
        return cached
    metadata = body["metadata"]
    key = (metadata.get("namespace"), metadata["name"])
    fingerprint = _fingerprint(body)
    kept = _parsed.get(key)
    if kept is not None and kept[0] == fingerprint:
        return kept[1]
    parsed = _parse(body)
    _parsed[key] = (fingerprint, parsed)
    return parsed


def forget_parsed(keep: set[_Key]) -> None:
    """Drop what was kept for pipelines no longer in `keep` (deleted ones)."""
    for key in [key for key in _parsed if key not in keep]:
        del _parsed[key]
