"""Webhook notifications (webhook.py): a pipeline's every watch event goes to the notifier,
which queues what is due and delivers it in its own task; nothing here waits for a receiver.

Kopf's event handlers keep no state on the object (no annotations, no finalizers), and at
start-up Kopf lists every pipeline as an event: a restarted operator looks at each once, and
`status.notification` tells it what was already sent.
"""

from __future__ import annotations

import asyncio
from typing import Any

import kopf

from duckherd.api import GROUP, PLURAL, VERSION
from duckherd_operator.context import kube
from duckherd_operator.webhook import Notifier, WebhookConfig, stop


@kopf.on.startup()
async def start_notifier(memo: kopf.Memo, **_: Any) -> None:
    config = memo.get("webhook")
    if not isinstance(config, WebhookConfig):
        return  # notifications are off (chart value notifications.webhook.secretName)
    notifier = Notifier(config, lambda: kube(memo))
    memo["notifier"] = notifier
    memo["notifier_task"] = asyncio.create_task(notifier.run())


@kopf.on.event(GROUP, VERSION, PLURAL)
async def pipeline_seen(
    namespace: str | None, name: str, body: kopf.Body, type: str, memo: kopf.Memo, **_: Any
) -> None:
    notifier = memo.get("notifier")
    if not isinstance(notifier, Notifier) or namespace is None:
        return
    if type == "DELETED":
        notifier.forget(namespace, name)
    else:
        notifier.observe(dict(body))


@kopf.on.cleanup()
async def stop_notifier(memo: kopf.Memo, **_: Any) -> None:
    task = memo.get("notifier_task")
    await stop(task if isinstance(task, asyncio.Task) else None)
