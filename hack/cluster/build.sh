#!/usr/bin/env bash
# Builds every cluster binary from the Go module proxy, pinned by hack/cluster/go.mod, into a
# cache outside the repo: $DUCKHERD_CLUSTER_CACHE/<k8s-version>/bin. Idempotent.
#
# Two groups, each with its own recipe and stamp, so that changing one never rebuilds the other:
#   kubernetes  etcd, the Kubernetes components, kubectl and cmd/ (provisioner, DNS), in ONE
#               `go build` so the shared packages (client-go, apiserver, ...) compile once;
#   helm        linked with helm's own ldflags (its version; the Kubernetes version that offline
#               `helm template` / `helm lint` assume, v1.20 otherwise).
# A new kubernetes binary restarts the running cluster (cluster.sh restarts a component whose
# binary changed), a new helm does not. Compiled packages stay in the Go build cache
# ($cache/go-build): a group whose link flags alone changed is only relinked.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.sh
. "$here/versions.sh"
cache=${DUCKHERD_CLUSTER_CACHE:-/var/cache/duckherd-cluster}
bin=$cache/$K8S_VERSION/bin
major=${K8S_VERSION#v}; minor=${major#*.}; minor=${minor%%.*}; major=${major%%.*}

k8s_bins=(etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl
  duckherd-provisioner duckherd-dns)
k8s_pkgs=(k8s.io/kubernetes/cmd/{kube-apiserver,kube-controller-manager,kube-scheduler,kubelet,kube-proxy,kubectl}
  ./cmd/...)
k8s_ldflags="-s -w"
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  k8s_ldflags+=" -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=$major -X $p.gitMinor=$minor"
  k8s_ldflags+=" -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
done

helm_bins=(helm)
helm_pkgs=(helm.sh/helm/v3/cmd/helm)
# As helm's Makefile sets them (there from its client-go version; here the cluster's version).
helm_ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
for p in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
  helm_ldflags+=" -X $p.k8sVersionMajor=$major -X $p.k8sVersionMinor=$minor"
done

# Everything that shapes a binary is part of its group's recipe (and so of its stamp).
goflags=(-trimpath)
export CGO_ENABLED=0
# recipe GROUP LDFLAGS BINS PKGS [FILES...]: the stamp of a group's build inputs.
recipe() {
  { printf '%s\n' "$1" "$2" "$3" "$4" "${goflags[*]} CGO_ENABLED=$CGO_ENABLED"
    cat "$here/go.mod" "$here/go.sum" "${@:5}"; } | sha256sum | cut -c1-16
}
k8s_stamp=$bin/.kubernetes-$(recipe kubernetes "$k8s_ldflags" "${k8s_bins[*]}" "${k8s_pkgs[*]}" "$here"/cmd/*/*.go)
helm_stamp=$bin/.helm-$(recipe helm "$helm_ldflags" "${helm_bins[*]}" "${helm_pkgs[*]}")

complete() { local dir=$1 b; shift; for b in "$@"; do [ -x "$dir/$b" ] || return 1; done; }

# One-time migration: the previous recipe built both groups in one `go build` under one stamp
# (.built-8858cd6e70c25675 for these very inputs). Its Kubernetes binaries are exactly what
# the kubernetes group builds: adopt them instead of relinking and restarting the cluster.
# (Its stamp stays, so checkouts of the previous build.sh keep finding their cache too.)
if [ "${k8s_stamp##*/}" = .kubernetes-91f12e7d9f63b858 ] && [ -f "$bin/.built-8858cd6e70c25675" ] &&
  complete "$bin" "${k8s_bins[@]}"; then
  touch "$k8s_stamp"
fi

go=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
export GOCACHE=${GOCACHE_CLUSTER:-$cache/go-build}

# build GROUP STAMP LDFLAGS "BINS" PKGS...: builds the group unless its stamp is there; the new
# binaries replace the old ones one by one (a rename each: running processes keep theirs).
build() {
  local group=$1 stamp=$2 ldflags=$3 start b
  local -a bins
  read -r -a bins <<<"$4"
  shift 4
  if [ -f "$stamp" ] && complete "$bin" "${bins[@]}"; then
    echo "cluster binaries ($group): cached in $bin"
    return 0
  fi
  [ -x "$go" ] || { echo "build.sh: Go toolchain not found (set GO=/path/to/go)" >&2; exit 1; }
  local tmp=$bin.tmp-$group
  rm -rf "$tmp"; mkdir -p "$tmp" "$bin"
  echo "cluster binaries ($group): building ${bins[*]} into $bin"
  start=$(date +%s)
  (cd "$here" && "$go" build "${goflags[@]}" -ldflags "$ldflags" -o "$tmp/" "$@")
  complete "$tmp" "${bins[@]}" || { echo "build.sh: missing binaries in $tmp (want: ${bins[*]})" >&2; exit 1; }
  echo "cluster binaries ($group): built in $(( $(date +%s) - start )) s"
  rm -f "$bin/.$group-"*
  [ "$group" != kubernetes ] || rm -f "$bin"/.built-*  # the previous recipe's stamp
  for b in "${bins[@]}"; do mv -f "$tmp/$b" "$bin/$b"; done
  rm -rf "$tmp"
  touch "$stamp"
}

[ -f "$k8s_stamp" ] || echo "cluster binaries: Kubernetes $K8S_VERSION and etcd take about 10 min cold on 2 idle cores"
build kubernetes "$k8s_stamp" "$k8s_ldflags" "${k8s_bins[*]}" "${k8s_pkgs[@]}"
build helm "$helm_stamp" "$helm_ldflags" "${helm_bins[*]}" "${helm_pkgs[@]}"
