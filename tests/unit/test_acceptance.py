"""Apply errors: what the API server refuses is Stalled, the rest is retried."""

from __future__ import annotations

import json
from typing import Any

from kubernetes_asyncio.client.exceptions import ApiException

from duckherd_operator.acceptance import classify_apply_error
from duckherd_operator.observe import superseded

CRONJOB: dict[str, Any] = {"kind": "CronJob", "metadata": {"name": "shop-ingest"}}


def api_error(status: int, message: str) -> ApiException:
    """As kubernetes_asyncio raises it: the status, and the API server's Status as the body."""
    error = ApiException(status=status, reason="refused")
    error.body = json.dumps({"kind": "Status", "message": message}).encode()
    return error


def test_an_invalid_child_is_refused() -> None:
    error = api_error(422, 'CronJob.batch "shop-ingest" is invalid: spec...tolerations[0].operator')
    problem = classify_apply_error(error, CRONJOB)
    assert (problem.reason, problem.transient) == ("ChildRejected", False)
    assert "CronJob shop-ingest" in problem.message and "tolerations[0]" in problem.message


def test_server_side_apply_refuses_a_bad_quantity_with_a_500() -> None:
    message = "failed to create typed patch object: .spec...limits.cpu: quantities must match"
    problem = classify_apply_error(api_error(500, message), CRONJOB)
    assert (problem.reason, problem.transient) == ("ChildRejected", False)
    assert "quantities must match" in problem.message


def test_an_unavailable_api_server_is_retried() -> None:
    for error in (api_error(503, "the server is shutting down"), ConnectionError("reset")):
        problem = classify_apply_error(error, CRONJOB)
        assert (problem.reason, problem.transient) == ("ApplyRetrying", True)


def test_only_jobs_started_for_an_older_generation_are_superseded() -> None:
    def job(annotations: dict[str, str]) -> dict[str, Any]:
        return {"metadata": {"name": "shop-ingest-m1", "annotations": annotations}}

    assert superseded(job({"duckherd.io/generation": "2"}), generation=3)
    assert not superseded(job({"duckherd.io/generation": "3"}), generation=3)
    assert not superseded(job({}), generation=3), "a CronJob's Job says nothing: keep it"
