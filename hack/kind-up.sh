#!/usr/bin/env bash
# For people with Docker: a kind cluster with the Duckherd image loaded, ready for
# `helm install` and the e2e suite (which takes any cluster through KUBECONFIG).
#
# Not used by CI and not runnable on the project's build machine (no Docker daemon there);
# the e2e suite's default cluster is hack/cluster, built from upstream sources. Kept minimal
# on purpose.
#
#   hack/kind-up.sh                    # cluster "duckherd", image built as localhost/duckherd:dev
#   KIND_CLUSTER=x IMAGE=y hack/kind-up.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cluster=${KIND_CLUSTER:-duckherd}
image=${IMAGE:-localhost/duckherd:dev}
for tool in docker kind kubectl; do
  command -v "$tool" >/dev/null || { echo "kind-up: $tool not found on PATH" >&2; exit 1; }
done
if ! kind get clusters | grep -qx "$cluster"; then
  kind create cluster --name "$cluster" --wait 120s
fi
docker build -t "$image" .
kind load docker-image --name "$cluster" "$image"
kubeconfig=${KUBECONFIG_OUT:-${TMPDIR:-/tmp}/kind-$cluster.kubeconfig}
kind get kubeconfig --name "$cluster" >"$kubeconfig"
# Pods reach this machine (where the e2e tests serve the demo API) at kind's network gateway.
host_ip=$(docker network inspect kind -f '{{range .IPAM.Config}}{{if .Gateway}}{{.Gateway}} {{end}}{{end}}' | awk '{print $1}')
cat <<MSG
kind cluster "$cluster" is up with $image loaded. Next:
  helm install duckherd charts/duckherd --namespace duckherd --create-namespace \\
    --set image.repository=${image%:*} --set image.tag=${image##*:}
  KUBECONFIG=$kubeconfig DUCKHERD_TEST_IMAGE=$image DUCKHERD_HOST_IP=$host_ip \\
    pytest -m e2e tests/e2e
MSG
