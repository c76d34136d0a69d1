"""What the operator keeps in Kopf's memo: its API client, the webhook configuration (and the
resync and notifier tasks).

Kopf hands activities the operator's memo and each watched object a shallow copy of it, made
when the object is first seen. Duckherd keeps nothing per object in it, so the copy is the memo
itself (SharedMemo): every handler sees the client the last login put in, and a fleet's
objects (seven per pipeline) do not carry a copy each. There is no module state: the login
handler puts the client in, the cleanup handler takes it out.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from duckherd_operator.client import KubeClient, from_connection, from_service_account

log = logging.getLogger("duckherd.operator")


class SharedMemo(kopf.Memo):
    """A memo whose copies are itself. Kopf's per-object copies would otherwise keep the
    client of the login before them: after Kopf logs in again (an API server's 401 with
    kubeconfig credentials), a handler of an object seen earlier would use a closed client."""

    def __copy__(self) -> SharedMemo:
        return self


def new_memo(webhook: Any = None) -> kopf.Memo:
    """`webhook`: a webhook.WebhookConfig, or None when notifications are off."""
    return SharedMemo(kube=None, webhook=webhook)


def kube(memo: kopf.Memo) -> KubeClient:
    client = memo.get("kube")
    if not isinstance(client, KubeClient):
        raise RuntimeError("not logged in to the Kubernetes API yet")
    return client


async def connect(memo: kopf.Memo, info: kopf.ConnectionInfo, *, service_account: bool) -> None:
    """Give the handlers a client for the credentials Kopf just logged in with.

    Kopf logs in again whenever the API server answers 401. A client that re-reads the
    service-account token file already follows a rotation and is kept; any other is replaced,
    and the old one closed once its requests under way have ended."""
    old = memo.get("kube")
    if isinstance(old, KubeClient) and old.rereads_token_file and service_account:
        return
    memo["kube"] = from_service_account(info) if service_account else from_connection(info)
    if isinstance(old, KubeClient):
        log.info("Kubernetes API credentials renewed; the previous client is closed")
        await old.close()


async def disconnect(memo: kopf.Memo) -> None:
    client = memo.get("kube")
    memo["kube"] = None
    if isinstance(client, KubeClient):
        await client.close()
