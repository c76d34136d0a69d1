#!/usr/bin/env bash
# Builds every cluster binary from the Go module proxy, pinned by hack/cluster/go.mod, in ONE
# `go build` so the shared packages (client-go, apiserver, ...) compile once. Output is cached
# by version outside the repo: $DUCKHERD_CLUSTER_CACHE/<k8s-version>/bin. Idempotent.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.sh
. "$here/versions.sh"
cache=${DUCKHERD_CLUSTER_CACHE:-/var/cache/duckherd-cluster}
bin=$cache/$K8S_VERSION/bin
want=(etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl helm duckherd-provisioner duckherd-dns)
stamp=$bin/.built-$(cat "$here/go.mod" "$here/go.sum" "$here/build.sh" "$here/versions.sh" "$here"/cmd/*/*.go | sha256sum | cut -c1-16)
complete() { local b; for b in "${want[@]}"; do [ -x "$1/$b" ] || return 1; done; }
if [ -f "$stamp" ] && complete "$bin"; then
  echo "cluster binaries: cached in $bin"
  exit 0
fi
go=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
[ -x "$go" ] || { echo "build.sh: Go toolchain not found (set GO=/path/to/go)" >&2; exit 1; }
rm -rf "$bin.tmp"; mkdir -p "$bin.tmp"
export GOCACHE=${GOCACHE_CLUSTER:-$cache/go-build} CGO_ENABLED=0
major=${K8S_VERSION#v}; minor=${major#*.}; minor=${minor%%.*}; major=${major%%.*}
ldflags="-s -w"
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=$major -X $p.gitMinor=$minor"
  ldflags+=" -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
done
ldflags+=" -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
echo "cluster binaries: building Kubernetes $K8S_VERSION, etcd, helm $HELM_VERSION into $bin (cold: about 10 min on 2 idle cores)"
start=$(date +%s)
cd "$here"
"$go" build -trimpath -ldflags "$ldflags" -o "$bin.tmp/" tool ./cmd/...
complete "$bin.tmp" || { echo "build.sh: missing binaries in $bin.tmp (want: ${want[*]})" >&2; exit 1; }
echo "cluster binaries: built in $(( $(date +%s) - start )) s"
rm -rf "$bin"
mv "$bin.tmp" "$bin"
touch "$stamp"
