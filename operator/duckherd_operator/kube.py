"""A small async Kubernetes API client on httpx, authenticated like Kopf.

Kopf brings no client for arbitrary objects; the official clients either lack async or make
server-side apply (our way to stay drift-free without fighting other field managers)
awkward. What we need is a handful of REST calls, so they are written out here.
"""

from __future__ import annotations

import base64
import json
import ssl
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import kopf

FIELD_MANAGER = "duckherd-operator"

_PLURALS = {
    ("v1", "ConfigMap"): ("/api/v1", "configmaps"),
    ("v1", "PersistentVolumeClaim"): ("/api/v1", "persistentvolumeclaims"),
    ("v1", "Pod"): ("/api/v1", "pods"),
    ("v1", "Event"): ("/api/v1", "events"),
    ("batch/v1", "CronJob"): ("/apis/batch/v1", "cronjobs"),
    ("batch/v1", "Job"): ("/apis/batch/v1", "jobs"),
    ("duckherd.io/v1alpha1", "DataPipeline"): ("/apis/duckherd.io/v1alpha1", "datapipelines"),
}


class ApiError(RuntimeError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status


def collection_path(api_version: str, kind: str, namespace: str) -> str:
    prefix, plural = _PLURALS[(api_version, kind)]
    return f"{prefix}/namespaces/{quote(namespace)}/{plural}"


def object_path(api_version: str, kind: str, namespace: str, name: str) -> str:
    return f"{collection_path(api_version, kind, namespace)}/{quote(name)}"


def _pem(data: str | bytes) -> bytes:
    raw = data.encode() if isinstance(data, str) else data
    return raw if raw.lstrip().startswith(b"-----BEGIN") else base64.b64decode(raw)


def _ssl_context(info: kopf.ConnectionInfo, workdir: Path) -> ssl.SSLContext | bool:
    if info.insecure:
        return False
    context = ssl.create_default_context()
    if info.ca_path:
        context.load_verify_locations(cafile=str(info.ca_path))
    elif info.ca_data:
        context.load_verify_locations(cadata=_pem(info.ca_data).decode())
    cert_path = str(info.certificate_path) if info.certificate_path else None
    key_path = str(info.private_key_path) if info.private_key_path else None
    if info.certificate_data:
        cert_file = workdir / "client.crt"
        cert_file.write_bytes(_pem(info.certificate_data))
        cert_path = str(cert_file)
    if info.private_key_data:
        key_file = workdir / "client.key"
        key_file.write_bytes(_pem(info.private_key_data))
        key_file.chmod(0o600)
        key_path = str(key_file)
    if cert_path:
        context.load_cert_chain(cert_path, key_path)
    return context


class Kube:
    """The calls the operator makes."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self._client = client

    @classmethod
    def from_connection(cls, info: kopf.ConnectionInfo) -> Kube:
        workdir = Path(tempfile.mkdtemp(prefix="duckherd-kube-"))
        headers = info.as_http_headers()
        client = httpx.AsyncClient(
            base_url=info.server,
            verify=_ssl_context(info, workdir),
            headers=headers,
            timeout=httpx.Timeout(30.0),
        )
        return cls(client)

    async def close(self) -> None:
        await self._client.aclose()

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> Any:
        content = None if body is None else json.dumps(body).encode()
        response = await self._client.request(
            method,
            path,
            params=params,
            content=content,
            headers={"Content-Type": content_type} if content is not None else None,
        )
        if response.status_code >= 400:
            try:
                message = response.json().get("message", response.text)
            except ValueError:
                message = response.text
            raise ApiError(response.status_code, str(message)[:2000])
        return response.json() if response.content else None

    async def get(self, path: str) -> dict[str, Any] | None:
        try:
            result: dict[str, Any] = await self._request("GET", path)
        except ApiError as error:
            if error.status == 404:
                return None
            raise
        return result

    async def list(self, path: str, label_selector: str | None = None) -> list[dict[str, Any]]:
        params = {"labelSelector": label_selector} if label_selector else None
        result = await self._request("GET", path, params=params)
        items: list[dict[str, Any]] = result.get("items", [])
        return items

    async def apply(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """Server-side apply: we own exactly the fields we set, and nothing else."""
        metadata = manifest["metadata"]
        path = object_path(
            manifest["apiVersion"], manifest["kind"], metadata["namespace"], metadata["name"]
        )
        result: dict[str, Any] = await self._request(
            "PATCH",
            path,
            params={"fieldManager": FIELD_MANAGER, "force": "true"},
            body=manifest,
            content_type="application/apply-patch+yaml",
        )
        return result

    async def create(self, manifest: dict[str, Any]) -> dict[str, Any] | None:
        """Create; None when it already exists (creation is idempotent by name)."""
        metadata = manifest["metadata"]
        path = collection_path(manifest["apiVersion"], manifest["kind"], metadata["namespace"])
        try:
            result: dict[str, Any] = await self._request("POST", path, body=manifest)
        except ApiError as error:
            if error.status == 409:
                return None
            raise
        return result

    async def merge_patch(self, path: str, patch: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = await self._request(
            "PATCH", path, body=patch, content_type="application/merge-patch+json"
        )
        return result
