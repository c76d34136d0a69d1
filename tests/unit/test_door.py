"""The operator's door (duckherd_operator/validation.py): a parse kept while the object is the
same, and the stage pods' default resources from the chart."""

from __future__ import annotations

import pytest

from duckherd.api import DataPipelineSpec
from duckherd.contract import ENV_STAGE_RESOURCES
from duckherd_operator.builders import DEFAULT_STAGE_RESOURCES
from duckherd_operator.validation import forget_parsed, parse_pipeline, stage_resources
from tests.unit.manifests import manifest


def _body(generation: int = 1, **spec: object) -> dict[str, object]:
    body = manifest()
    body["spec"].update(spec)
    body["metadata"].update(namespace="ns", uid="u1", generation=generation)
    return body


def test_the_same_object_is_parsed_once_and_a_changed_one_again() -> None:
    first = parse_pipeline(_body())
    assert parse_pipeline(_body()) is first
    assert parse_pipeline(_body(generation=2)) is not first
    changed = parse_pipeline(_body(generation=2, schedule="5 4 * * *"))
    assert changed.pipeline is not None and changed.pipeline.spec.schedule == "5 4 * * *"
    forget_parsed(set())
    assert parse_pipeline(_body(generation=2, schedule="5 4 * * *")) is not changed


def test_kept_parses_share_their_fields_sets_and_read_as_a_plain_parse() -> None:
    """A fleet keeps a parse per pipeline; pydantic's per-model set of the fields given is
    shared between them (validation.share_fields_sets), and the parse reads the same."""
    first, second = parse_pipeline(_body()), parse_pipeline(_body(suspend=True))
    assert first.pipeline is not None and second.pipeline is not None
    one, other = first.pipeline.spec, second.pipeline.spec
    assert one.sources[0].model_fields_set is other.sources[0].model_fields_set
    assert other.model_fields_set == one.model_fields_set | {"suspend"}  # what each was given
    plain = DataPipelineSpec.model_validate(_body()["spec"])
    assert one == plain
    assert one.model_dump(mode="json") == plain.model_dump(mode="json")
    assert one.model_copy(deep=True) == plain
    with pytest.raises(AttributeError):  # assigning to a kept parse fails loudly
        one.schedule = "1 2 * * *"


def test_an_invalid_spec_is_a_problem_naming_the_field() -> None:
    parsed = parse_pipeline(_body(schedule="61 * * * *"))
    assert parsed.pipeline is None and parsed.problem is not None
    assert parsed.problem.reason == "InvalidSpec" and "spec.schedule" in parsed.problem.message


def test_stage_resources_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_STAGE_RESOURCES, raising=False)
    assert stage_resources() == DEFAULT_STAGE_RESOURCES
    monkeypatch.setenv(ENV_STAGE_RESOURCES, '{"requests": {"cpu": 2, "memory": "1Gi"}}')
    assert stage_resources() == {"requests": {"cpu": "2", "memory": "1Gi"}}
    parsed = parse_pipeline(_body(generation=7))
    assert parsed.pipeline is not None
    assert parsed.pipeline.default_resources == {"requests": {"cpu": "2", "memory": "1Gi"}}


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ('{"requests": {"cpu": "lots"}}', "resources.requests.cpu"),
        ('{"requests": ', "DUCKHERD_STAGE_RESOURCES"),
        ('{"request": {}}', "resources.request"),
    ],
)
def test_bad_stage_resources_are_one_line_naming_the_field(
    monkeypatch: pytest.MonkeyPatch, text: str, named: str
) -> None:
    monkeypatch.setenv(ENV_STAGE_RESOURCES, text)
    with pytest.raises(ValueError, match=ENV_STAGE_RESOURCES) as caught:
        stage_resources()
    message = str(caught.value)
    assert message.startswith(f"{ENV_STAGE_RESOURCES}: ") and named in message
    assert "\n" not in message
