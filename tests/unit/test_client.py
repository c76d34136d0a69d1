"""The operator's API client (kubernetes_asyncio) against a real HTTP server on loopback:
paging, retries, server-side apply, the login's credentials, and no key files left behind."""

from __future__ import annotations

import asyncio
import base64
import datetime
import json
import os
import tempfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import certifi
import kopf
import pytest
from aiohttp import web
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.config import incluster_config
from multidict import CIMultiDict, CIMultiDictProxy
from prometheus_client import REGISTRY

from duckherd_operator import client as client_module
from duckherd_operator import context
from duckherd_operator.client import (
    FIELD_MANAGER,
    PAGE_SIZE,
    KubeClient,
    from_connection,
    from_service_account,
)

PODS = "/api/v1/namespaces/ns/pods"
CONFIGMAP = "/api/v1/namespaces/ns/configmaps/shop-spec"

Reply = Callable[[web.BaseRequest], web.Response]


@dataclass
class FakeApi:
    """Answers each path with the next of its scripted replies; records every request."""

    replies: dict[str, list[Reply]] = field(default_factory=dict)
    seen: list[tuple[str, str, dict[str, str], dict[str, str], bytes]] = field(default_factory=list)

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        body = await request.read()
        self.seen.append(
            (request.method, request.path, dict(request.query), dict(request.headers), body)
        )
        return self.replies[request.path].pop(0)(request)


def json_reply(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Reply:
    return lambda _: web.json_response(data, status=status, headers=headers)


@pytest.fixture
async def api() -> AsyncIterator[tuple[FakeApi, str]]:
    fake = FakeApi()
    server = web.Server(fake.handle)
    runner = web.ServerRunner(server)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield fake, f"http://127.0.0.1:{port}"
    await runner.cleanup()


@pytest.fixture
async def kube(api: tuple[FakeApi, str]) -> AsyncIterator[KubeClient]:
    client = from_connection(kopf.ConnectionInfo(server=api[1], token="secret-token"))
    yield client
    await client.close()


async def test_a_list_reads_every_page(api: tuple[FakeApi, str], kube: KubeClient) -> None:
    fake, _ = api
    fake.replies[PODS] = [
        json_reply({"metadata": {"continue": "page-2"}, "items": [{"n": 1}, {"n": 2}]}),
        json_reply({"metadata": {}, "items": [{"n": 3}]}),
    ]
    items = await kube.list(PODS, "duckherd.io/pipeline=shop")
    assert items == [{"n": 1}, {"n": 2}, {"n": 3}]
    queries = [query for _, _, query, _, _ in fake.seen]
    assert queries == [
        {"limit": str(PAGE_SIZE), "labelSelector": "duckherd.io/pipeline=shop"},
        {
            "limit": str(PAGE_SIZE),
            "labelSelector": "duckherd.io/pipeline=shop",
            "continue": "page-2",
        },
    ]
    assert all(headers["Authorization"] == "Bearer secret-token" for *_, headers, _ in fake.seen)


async def test_throttling_and_server_errors_are_retried(
    api: tuple[FakeApi, str], kube: KubeClient
) -> None:
    fake, _ = api
    path = "/apis/duckherd.io/v1alpha1/namespaces/ns/datapipelines/shop"
    fake.replies[path] = [
        json_reply({"kind": "Status"}, status=429, headers={"Retry-After": "0"}),
        json_reply({"kind": "Status"}, status=503),
        json_reply({"metadata": {"name": "shop"}}),
    ]
    host = api[1].removeprefix("http://")

    def requests(code: str) -> float:
        labels = {"code": code, "method": "GET", "host": host}
        return REGISTRY.get_sample_value("rest_client_requests_total", labels) or 0.0

    before = {code: requests(code) for code in ("429", "503", "200")}
    assert await kube.get(path) == {"metadata": {"name": "shop"}}
    assert len(fake.seen) == 3
    # Every attempt is counted under client-go's metric, by code, method and host.
    assert {code: requests(code) - before[code] for code in before} == {
        "429": 1.0,
        "503": 1.0,
        "200": 1.0,
    }


def test_retry_after_is_honoured_within_a_bound() -> None:
    error = ApiException(status=429, reason="Too Many Requests")
    error.headers = CIMultiDictProxy(CIMultiDict({"Retry-After": "3"}))
    assert client_module._retry_delay(1, error) == 3.0
    error.headers = CIMultiDictProxy(CIMultiDict({"Retry-After": "3600"}))
    assert client_module._retry_delay(1, error) == client_module.MAX_RETRY_DELAY_SECONDS
    assert 0 < client_module._retry_delay(1, None) <= client_module.MAX_RETRY_DELAY_SECONDS


async def test_a_refusal_is_not_retried(api: tuple[FakeApi, str], kube: KubeClient) -> None:
    fake, _ = api
    fake.replies[CONFIGMAP] = [json_reply({"message": "invalid"}, status=422)] * 3
    with pytest.raises(ApiException) as raised:
        await kube.apply(_configmap())
    assert raised.value.status == 422
    assert len(fake.seen) == 1


async def test_a_missing_object_is_none_and_an_existing_one_is_not_created_twice(
    api: tuple[FakeApi, str], kube: KubeClient
) -> None:
    fake, _ = api
    fake.replies[CONFIGMAP] = [json_reply({"kind": "Status"}, status=404)]
    fake.replies["/api/v1/namespaces/ns/configmaps"] = [json_reply({}, status=409)]
    assert await kube.get(CONFIGMAP) is None
    assert await kube.create(_configmap()) is None


async def test_apply_is_server_side_apply_with_our_field_manager(
    api: tuple[FakeApi, str], kube: KubeClient
) -> None:
    fake, _ = api
    fake.replies[CONFIGMAP] = [json_reply(_configmap())]
    await kube.apply(_configmap())
    method, _, query, headers, body = fake.seen[0]
    assert method == "PATCH"
    assert query == {"fieldManager": FIELD_MANAGER, "force": "true"}
    assert headers["Content-Type"] == "application/apply-patch+yaml"
    assert json.loads(body) == _configmap()


async def test_close_waits_for_requests_under_way(
    api: tuple[FakeApi, str], kube: KubeClient
) -> None:
    fake, _ = api
    fake.replies[PODS] = [json_reply({"metadata": {}, "items": [{"n": 1}]})]
    pending = asyncio.ensure_future(kube.list(PODS))
    await kube.close()
    assert await pending == [{"n": 1}]


def test_inline_credentials_live_only_while_the_client_is_built(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    pem = Path(certifi.where()).read_bytes()
    info = kopf.ConnectionInfo(
        server="https://127.0.0.1:6443",
        ca_data=base64.b64encode(pem).decode(),
        certificate_data="Y2VydA==",
        private_key_data=b"-----BEGIN PRIVATE KEY-----\nkey\n",
    )
    with client_module._pem_files(info) as files:
        assert Path(str(files["ca"])).read_bytes() == pem
        assert Path(str(files["cert"])).read_bytes() == b"cert"
        key = Path(str(files["key"]))
        assert key.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
        assert key.stat().st_mode & 0o077 == 0
    assert list(tmp_path.iterdir()) == []


async def test_a_kubeconfig_login_leaves_no_files_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    pem = Path(certifi.where()).read_bytes()
    info = kopf.ConnectionInfo(server="https://127.0.0.1:6443", ca_data=pem, token="t")
    client = from_connection(info)
    await client.close()
    assert list(tmp_path.iterdir()) == []


async def test_a_rotated_service_account_token_is_read_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The library re-reads the token file once its copy is older than a minute; with that
    period at zero, every request reads the file, so the test needs no clock."""
    monkeypatch.setattr(incluster_config, "TOKEN_REFRESH_PERIOD", datetime.timedelta(0))
    (tmp_path / "ca.crt").write_bytes(Path(certifi.where()).read_bytes())
    token = tmp_path / "token"
    token.write_text("first-token")
    env = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    info = kopf.ConnectionInfo(server="https://10.96.0.1:443", token="first-token")
    client = from_service_account(info, env, folder=tmp_path)
    try:
        assert client.rereads_token_file
        assert client.configuration.host == "https://10.96.0.1:443"
        assert await _authorization(client) == "Bearer first-token"
        # kubelet swaps the projected file atomically (a symlink flip); a rename does the same.
        (tmp_path / "token.new").write_text("second-token")
        os.replace(tmp_path / "token.new", token)
        assert await _authorization(client) == "Bearer second-token"
    finally:
        await client.close()


async def test_without_the_service_variables_kopfs_login_is_used(tmp_path: Path) -> None:
    info = kopf.ConnectionInfo(server="https://kubernetes.default.svc", token="kopf-token")
    client = from_service_account(info, {}, folder=tmp_path)
    try:
        assert not client.rereads_token_file
        assert await _authorization(client) == "Bearer kopf-token"
    finally:
        await client.close()


async def _authorization(client: KubeClient) -> str:
    settings = await client.configuration.auth_settings()
    return str(settings["BearerToken"]["value"])


def _configmap() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "shop-spec", "namespace": "ns"},
        "data": {"spec.yaml": "x"},
    }


async def test_logging_in_again_with_a_kubeconfig_replaces_and_closes_the_client(
    api: tuple[FakeApi, str],
) -> None:
    memo = context.new_memo()
    await context.connect(
        memo, kopf.ConnectionInfo(server=api[1], token="old"), service_account=False
    )
    first = context.kube(memo)
    await context.connect(
        memo, kopf.ConnectionInfo(server=api[1], token="new"), service_account=False
    )
    second = context.kube(memo)
    assert second is not first
    assert await _authorization(second) == "Bearer new"
    assert first._closed
    await context.disconnect(memo)
    assert second._closed
    with pytest.raises(RuntimeError, match="not logged in"):
        context.kube(memo)


async def test_an_object_seen_before_a_new_login_gets_the_new_client(
    api: tuple[FakeApi, str],
) -> None:
    """Kopf gives each watched object a copy of the operator's memo when it first sees it
    (its ResourceMemories, as the reactor calls them): that copy is the memo itself."""
    from kopf._core.reactor.inventory import ResourceMemories

    memo = context.new_memo()
    await context.connect(
        memo, kopf.ConnectionInfo(server=api[1], token="old"), service_account=False
    )
    raw_body: Any = {"metadata": {"uid": "u-1", "name": "shop", "namespace": "ns"}}
    seen: Any = await ResourceMemories().recall(raw_body, memobase=memo)  # type: ignore[arg-type]
    await context.connect(
        memo, kopf.ConnectionInfo(server=api[1], token="new"), service_account=False
    )
    assert seen.memo is memo
    client = context.kube(seen.memo)
    assert await _authorization(client) == "Bearer new"
    await context.disconnect(memo)
