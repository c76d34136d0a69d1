"""kubernetes_asyncio's transport without its generated API and model classes.

The operator uses kubernetes_asyncio for transport only (client.py: `ApiClient.call_api` with
plain dicts, `Configuration`, the in-cluster token loader, `ApiException`). Importing any of
it runs the package's `__init__` modules, which import every generated API class and model
(about 800 modules): 66 MiB of the operator's 110 MiB resident before it holds any pipeline
(docs/fleet.md, measured with benchmarks/profile_fleet_memory.py). `use_lean_kubernetes_client`
registers the three packages as plain namespaces over the same directories, so only the
modules the operator imports are loaded; the library's code runs unchanged.

It is called once by `duckherd operator` before anything imports kubernetes_asyncio or Kopf
(Kopf probes for `kubernetes_asyncio.client.V1ObjectMeta` to accept the library's model
objects as bodies; the operator hands Kopf dicts, so the probe finding nothing is right).
A process that already imported the library (tests, tools) keeps it as it is.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
import types

LEAN_PACKAGES = (
    "kubernetes_asyncio",
    "kubernetes_asyncio.client",
    "kubernetes_asyncio.client.models",
    "kubernetes_asyncio.config",
)


def _namespace(name: str, locations: list[str]) -> types.ModuleType:
    spec = importlib.machinery.ModuleSpec(name, None, is_package=True)
    spec.submodule_search_locations = locations
    module = importlib.util.module_from_spec(spec)
    module.__path__ = locations
    return module


def use_lean_kubernetes_client() -> bool:
    """Register the lean packages; False when kubernetes_asyncio was already imported."""
    if any(name in sys.modules for name in LEAN_PACKAGES):
        return False
    found = importlib.util.find_spec("kubernetes_asyncio")
    if found is None or not found.submodule_search_locations:
        return False  # not installed: the import that needs it says so
    root = list(found.submodule_search_locations)
    for name in LEAN_PACKAGES:
        relative = name.split(".")[1:]
        locations = [f"{location}/{'/'.join(relative)}".rstrip("/") for location in root]
        sys.modules[name] = _namespace(name, locations)
    # The one name the library's own modules import from the package rather than from its
    # module (config/incluster_config.py: `from kubernetes_asyncio.client import Configuration`).
    from kubernetes_asyncio.client.configuration import Configuration

    sys.modules["kubernetes_asyncio.client"].Configuration = Configuration  # type: ignore[attr-defined]
    return True
