#!/usr/bin/env bash
# For people with Docker: a kind cluster with the Duckherd image loaded, ready for
# `helm install` and the e2e suite (`KUBECONFIG=$(kind get kubeconfig-path) pytest -m e2e`,
# or simply the current kubectl context kind sets).
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
cat <<MSG
kind cluster "$cluster" is up with $image loaded. Next:
  helm install duckherd charts/duckherd --namespace duckherd --create-namespace \\
    --set image.repository=${image%:*} --set image.tag=${image##*:} --set image.pullPolicy=Never
  DUCKHERD_TEST_IMAGE=$image pytest -m e2e tests/e2e
MSG
