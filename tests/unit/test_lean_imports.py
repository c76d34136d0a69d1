"""`duckherd operator` loads kubernetes_asyncio's transport without its generated API and model
classes (duckherd_operator/lean_imports.py), and the operator's API client works as it does
with the whole library: its own tests pass in a process that uses the lean packages."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

LEAN_PROCESS = """
import sys
from duckherd_operator.lean_imports import use_lean_kubernetes_client

assert use_lean_kubernetes_client(), "kubernetes_asyncio was imported before"
import kopf  # noqa: F401  (probes the library for its model classes at import)
import duckherd_operator.handlers  # noqa: F401
import duckherd_operator.main  # noqa: F401
import pytest

code = pytest.main(["tests/unit/test_client.py", "-q", "-p", "no:cacheprovider"])
generated = sorted(
    name
    for name in sys.modules
    if name.startswith(("kubernetes_asyncio.client.api.", "kubernetes_asyncio.client.models."))
)
print("generated modules loaded:", generated[:5], len(generated))
sys.exit(code or (3 if generated else 0))
"""


def test_the_api_client_works_without_the_generated_classes() -> None:
    done = subprocess.run(
        [sys.executable, "-c", LEAN_PROCESS],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "generated modules loaded: [] 0" in done.stdout


def test_a_process_that_imported_the_library_keeps_it() -> None:
    import kubernetes_asyncio.client  # noqa: F401  (the whole package, as tests and tools do)

    from duckherd_operator.lean_imports import use_lean_kubernetes_client

    assert not use_lean_kubernetes_client()
    assert hasattr(sys.modules["kubernetes_asyncio.client"], "CoreV1Api")
