"""The operator's Kubernetes API client: kubernetes_asyncio, logged in as Kopf is.

kubernetes_asyncio (the async sibling of the official `kubernetes` client, on the aiohttp that
Kopf already runs on) does the transport: TLS, authentication and, in a pod, re-reading the
service-account token file (kubelet rotates it; the library re-reads it at most a minute after
a change). Our objects are plain dicts (builders.py makes them, chain.py reads them), so the
calls go through `ApiClient.call_api` with the resource paths below and come back as dicts;
the typed models would only be converted back and forth. This module adds what the library
leaves to the caller: retries on 429 and 5xx, list pagination, and server-side apply with our
field manager.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import kopf
from kubernetes_asyncio.client.api_client import ApiClient
from kubernetes_asyncio.client.configuration import Configuration
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.config.config_exception import ConfigException
from kubernetes_asyncio.config.incluster_config import InClusterConfigLoader

from duckherd import __version__
from duckherd_operator import metrics
from duckherd_operator.backoff import retry_delay

FIELD_MANAGER = "duckherd-operator"
SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
REQUEST_TIMEOUT_SECONDS = 30.0
# 429 (API priority and fairness), and the answers of an API server that is restarting or
# overloaded; anything else is the caller's to handle.
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_ATTEMPTS = 5
MAX_RETRY_DELAY_SECONDS = 10.0
PAGE_SIZE = 500

log = logging.getLogger("duckherd.operator.client")

_RESOURCES = {
    ("v1", "ConfigMap"): ("/api/v1", "configmaps"),
    ("v1", "PersistentVolumeClaim"): ("/api/v1", "persistentvolumeclaims"),
    ("v1", "Pod"): ("/api/v1", "pods"),
    ("v1", "Event"): ("/api/v1", "events"),
    ("v1", "Secret"): ("/api/v1", "secrets"),  # the webhook URL's, by name only (webhook.py)
    ("batch/v1", "CronJob"): ("/apis/batch/v1", "cronjobs"),
    ("batch/v1", "Job"): ("/apis/batch/v1", "jobs"),
    ("duckherd.io/v1alpha1", "DataPipeline"): ("/apis/duckherd.io/v1alpha1", "datapipelines"),
}

# What `call_api` decodes the JSON answers to: plain Python objects.
_AS_JSON = {200: "object", 201: "object"}


def collection_path(api_version: str, kind: str, namespace: str | None) -> str:
    """The collection of `kind` in `namespace`, or across all namespaces for None."""
    prefix, plural = _RESOURCES[(api_version, kind)]
    if namespace is None:
        return f"{prefix}/{plural}"
    return f"{prefix}/namespaces/{quote(namespace, safe='')}/{plural}"


def object_path(api_version: str, kind: str, namespace: str, name: str) -> str:
    return f"{collection_path(api_version, kind, namespace)}/{quote(name, safe='')}"


def _retry_delay(attempt: int, error: ApiException | None) -> float:
    headers: Mapping[str, str] = (error.headers if error is not None else None) or {}
    retry_after = headers.get("Retry-After")
    return retry_delay(
        attempt, str(retry_after) if retry_after else None, base=0.2, cap=MAX_RETRY_DELAY_SECONDS
    )


class KubeClient:
    """The calls the operator makes, over one kubernetes_asyncio ApiClient."""

    def __init__(self, api: ApiClient, *, rereads_token_file: bool = False) -> None:
        self._api = api
        self.rereads_token_file = rereads_token_file
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._closed = False

    @property
    def configuration(self) -> Configuration:
        return self._api.configuration

    async def _call(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> Any:
        headers = {"Accept": "application/json", "Content-Type": content_type}
        for attempt in range(1, MAX_ATTEMPTS + 1):
            error: ApiException | None = None
            self._in_flight += 1
            self._idle.clear()
            code: int | None = None
            try:
                data, code, _ = await self._api.call_api(
                    path,
                    method,
                    query_params=list((query or {}).items()),
                    header_params=dict(headers),
                    body=body,
                    auth_settings=["BearerToken"],
                    response_types_map=_AS_JSON,
                    _return_http_data_only=False,
                    _request_timeout=REQUEST_TIMEOUT_SECONDS,
                )
                return data
            except ApiException as exc:
                code = exc.status
                if exc.status not in RETRY_STATUSES or attempt == MAX_ATTEMPTS:
                    raise
                error = exc
            except (aiohttp.ClientConnectionError, TimeoutError):
                if attempt == MAX_ATTEMPTS:
                    raise
            finally:
                metrics.count_request(method, self._api.configuration.host or "", code)
                self._in_flight -= 1
                if self._in_flight == 0:
                    self._idle.set()
            reason = f"HTTP {error.status}" if error is not None else "connection failed"
            log.debug("%s %s: %s; retrying (attempt %d)", method, path, reason, attempt)
            await asyncio.sleep(_retry_delay(attempt, error))
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def get(self, path: str) -> dict[str, Any] | None:
        """The object at `path`, or None when it does not exist."""
        try:
            result: dict[str, Any] = await self._call("GET", path)
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        return result

    async def list(self, path: str, label_selector: str | None = None) -> list[dict[str, Any]]:
        """Every item of the collection, page by page."""
        items: list[dict[str, Any]] = []
        query = {"limit": str(PAGE_SIZE)}
        if label_selector:
            query["labelSelector"] = label_selector
        while True:
            page = await self._call("GET", path, query=query)
            items.extend(page.get("items") or [])
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return items
            query["continue"] = token

    async def apply(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """Server-side apply: we own exactly the fields we set, and nothing else."""
        metadata = manifest["metadata"]
        path = object_path(
            manifest["apiVersion"], manifest["kind"], metadata["namespace"], metadata["name"]
        )
        result: dict[str, Any] = await self._call(
            "PATCH",
            path,
            query={"fieldManager": FIELD_MANAGER, "force": "true"},
            body=manifest,
            content_type="application/apply-patch+yaml",
        )
        return result

    async def create(self, manifest: dict[str, Any]) -> dict[str, Any] | None:
        """Create; None when it already exists (creation is idempotent by name)."""
        metadata = manifest["metadata"]
        path = collection_path(manifest["apiVersion"], manifest["kind"], metadata["namespace"])
        try:
            result: dict[str, Any] = await self._call("POST", path, body=manifest)
        except ApiException as error:
            if error.status == 409:
                return None
            raise
        return result

    async def merge_patch(self, path: str, patch: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = await self._call(
            "PATCH", path, body=patch, content_type="application/merge-patch+json"
        )
        return result

    async def close(self, drain_seconds: float = REQUEST_TIMEOUT_SECONDS) -> None:
        """Close the connections once the requests under way have ended (or after a while)."""
        if self._closed:
            return
        self._closed = True
        try:
            await asyncio.wait_for(self._idle.wait(), drain_seconds)
        except TimeoutError:
            log.warning("closing the API client with %d requests under way", self._in_flight)
        await self._api.close()


# --------------------------------------------------------------------------- logging in


def _pem(data: str | bytes) -> bytes:
    """kubeconfig's *-data fields are base64 of PEM; accept PEM as it is too."""
    raw = data.encode() if isinstance(data, str) else data
    return raw if b"-----BEGIN" in raw else base64.b64decode(raw)


@contextmanager
def _pem_files(info: kopf.ConnectionInfo) -> Iterator[dict[str, str | None]]:
    """Paths of the CA, client certificate and key, writing inline data to a private folder
    that exists only while the client's TLS context is built (aiohttp reads the files once)."""
    with tempfile.TemporaryDirectory(prefix="duckherd-kube-") as folder:
        paths: dict[str, str | None] = {
            "ca": os.fsdecode(info.ca_path) if info.ca_path else None,
            "cert": os.fsdecode(info.certificate_path) if info.certificate_path else None,
            "key": os.fsdecode(info.private_key_path) if info.private_key_path else None,
        }
        for name, data in (
            ("ca", info.ca_data),
            ("cert", info.certificate_data),
            ("key", info.private_key_data),
        ):
            if data:
                path = Path(folder, f"{name}.pem")
                path.touch(mode=0o600)
                path.write_bytes(_pem(data))
                paths[name] = str(path)
        yield paths


def _api_client(configuration: Configuration) -> ApiClient:
    api = ApiClient(configuration)
    api.user_agent = f"{FIELD_MANAGER}/{__version__}"
    return api


def from_connection(info: kopf.ConnectionInfo) -> KubeClient:
    """A client with the credentials of a kubeconfig login, as Kopf read them."""
    configuration = Configuration(host=info.server)
    configuration.verify_ssl = not info.insecure
    if info.token:
        configuration.api_key["BearerToken"] = f"{info.scheme or 'Bearer'} {info.token}"
    if info.proxy_url:
        configuration.proxy = info.proxy_url
    with _pem_files(info) as files:
        configuration.ssl_ca_cert = files["ca"]
        configuration.cert_file = files["cert"]
        configuration.key_file = files["key"]
        api = _api_client(configuration)  # the TLS context is built here, from the files
    return KubeClient(api)


def from_service_account(
    info: kopf.ConnectionInfo,
    env: Mapping[str, str] = os.environ,
    folder: Path = SERVICE_ACCOUNT_DIR,
) -> KubeClient:
    """A client that re-reads the service-account token file (a rotated token is picked up
    without a restart). The library's in-cluster loader addresses the API server as client-go
    does, at KUBERNETES_SERVICE_HOST:PORT (handlers/startup.py gives Kopf the same address);
    without those variables, Kopf's login is used as it is."""
    configuration = Configuration()
    loader = InClusterConfigLoader(
        token_filename=str(folder / "token"),
        cert_filename=str(folder / "ca.crt"),
        environ=dict(env),
    )
    try:
        loader.load_and_set(configuration)
    except ConfigException as error:
        log.warning("service-account token will not be re-read (%s); using Kopf's login", error)
        return from_connection(info)
    return KubeClient(_api_client(configuration), rereads_token_file=True)
