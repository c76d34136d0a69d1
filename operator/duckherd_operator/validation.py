"""Validation at the door: a DataPipeline object in, a Pipeline or a Problem naming the field out.

Pure: reads the object and the process environment (the stage image), calls no API.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from duckherd import __version__
from duckherd.api import MAX_PIPELINE_NAME, DataPipelineSpec
from duckherd.contract import ENV_IMAGE, ENV_IMAGE_PULL_POLICY
from duckherd.status import Problem
from duckherd.validation import describe_validation_errors
from duckherd_operator.builders import Pipeline


def stage_image() -> tuple[str, str]:
    image = os.environ.get(ENV_IMAGE, f"duckherd:{__version__}")
    return image, os.environ.get(ENV_IMAGE_PULL_POLICY, "IfNotPresent")


@dataclass(frozen=True)
class Parsed:
    pipeline: Pipeline | None
    problem: Problem | None


def parse_pipeline(body: dict[str, Any]) -> Parsed:
    """Validate a DataPipeline object at the door; a Problem names the field."""
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
        ),
        None,
    )
