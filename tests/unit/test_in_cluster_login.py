"""The operator reaches the API server in a pod without cluster DNS."""

from __future__ import annotations

import kopf

from duckherd_operator.handlers.startup import in_cluster_address


def _service_account_login() -> kopf.ConnectionInfo:
    return kopf.ConnectionInfo(server="https://kubernetes.default.svc", token="t")


def test_uses_the_injected_service_address() -> None:
    env = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    info = in_cluster_address(_service_account_login(), env)
    assert info.server == "https://10.96.0.1:443"
    assert info.token == "t"


def test_brackets_an_ipv6_service_address() -> None:
    env = {"KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "443"}
    assert in_cluster_address(_service_account_login(), env).server == "https://[fd00::1]:443"


def test_leaves_kubeconfig_logins_and_bare_environments_alone() -> None:
    kubeconfig = kopf.ConnectionInfo(server="https://127.0.0.1:6443", token="t")
    env = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    assert in_cluster_address(kubeconfig, env) is kubeconfig
    login = _service_account_login()
    assert in_cluster_address(login, {}) is login
