"""The process-wide API client, created from the credentials Kopf logged in with."""

from __future__ import annotations

import kopf

from duckherd_operator.kube import Kube

_connection: kopf.ConnectionInfo | None = None
_kube: Kube | None = None
_namespaces: list[str] = []


def set_namespaces(namespaces: list[str]) -> None:
    """The namespaces the operator serves; empty means the whole cluster."""
    global _namespaces
    _namespaces = list(namespaces)


def namespaces() -> list[str]:
    return list(_namespaces)


def set_connection(info: kopf.ConnectionInfo) -> None:
    global _connection, _kube
    _connection, _kube = info, None


def kube() -> Kube:
    global _kube
    if _kube is None:
        if _connection is None:
            raise RuntimeError("not logged in to the Kubernetes API yet")
        _kube = Kube.from_connection(_connection)
    return _kube


async def close() -> None:
    global _kube
    if _kube is not None:
        await _kube.close()
        _kube = None
