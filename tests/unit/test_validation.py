"""One line per validation failure, naming the field, never echoing the rejected input."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ValidationError, model_validator

from duckherd.api import DataPipelineSpec
from duckherd.validation import describe_validation_errors


class _Inner(BaseModel):
    port: int


class _Outer(BaseModel):
    inner: _Inner
    items: list[int]

    @model_validator(mode="after")
    def _not_empty(self) -> _Outer:
        if not self.items:
            raise ValueError("items must not be empty")
        return self


def _errors(data: object) -> ValidationError:
    with pytest.raises(ValidationError) as caught:
        _Outer.model_validate(data)
    return caught.value


def test_each_error_names_its_field_under_the_given_prefix() -> None:
    error = _errors({"inner": {"port": "s3cret-not-a-port"}, "items": [1, "x"]})
    text = describe_validation_errors(error.errors(), "spec")
    assert text.startswith("spec.inner.port: Input should be a valid integer")
    assert "; spec.items[1]: Input should be a valid integer" in text
    assert "s3cret" not in text
    assert "\n" not in text


def test_a_model_wide_error_stands_under_the_prefix_alone() -> None:
    error = _errors({"inner": {"port": 1}, "items": []})
    assert describe_validation_errors(error.errors(), "kwargs") == (
        "kwargs: Value error, items must not be empty"
    )
    assert describe_validation_errors(error.errors()) == "Value error, items must not be empty"


def test_pydantic_1_root_locations_are_dropped() -> None:
    v1_errors = [{"loc": ("__root__",), "msg": "bad"}, {"loc": ("__root__", "column"), "msg": "x"}]
    assert describe_validation_errors(v1_errors, "kwargs") == "kwargs: bad; kwargs.column: x"


def test_a_real_spec_error_names_the_spec_field() -> None:
    with pytest.raises(ValidationError) as caught:
        DataPipelineSpec.model_validate({"sources": [{"name": "Bad Name"}]})
    text = describe_validation_errors(caught.value.errors(), "spec")
    assert text.startswith("spec.schedule: Field required; spec.sources[0].name: String should ")
