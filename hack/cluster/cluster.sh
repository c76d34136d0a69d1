#!/usr/bin/env bash
# A real single-node Kubernetes cluster on this machine, built from upstream sources, for the
# end-to-end tests (issue 3). No kind, no registry, no Docker engine:
#   etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kube-proxy (iptables),
#   kubectl and helm built from the Go module proxy (hack/cluster/go.mod, build.sh);
#   containerd + runc + CNI bridge from Debian; a hostPath dynamic provisioner
#   (cmd/duckherd-provisioner) behind the default StorageClass; images made with
#   debootstrap + buildah and imported into containerd.
#
# Usage: hack/cluster/cluster.sh up | down | status | env | images | purge | stop|start|restart C
#   up      install deps, build/cache binaries, start everything, wait for a Ready node. Idempotent.
#   down    stop every process it started (by PID), remove its mounts, bridge, iptables rules.
#           The state directory stays (etcd data, images): the next `up` is like a node reboot.
#   purge   down, then delete the state directory (the binary/image caches stay).
#   status  one line per component.
#   env     prints `export KUBECONFIG=... PATH=... DUCKHERD_HOST_IP=... DUCKHERD_TEST_IMAGE=...`
#   images  (re)build the images and import them into the running containerd.
#   stop|start|restart COMPONENT  one component of a running cluster (e.g. kube-apiserver), for
#           fault tests: `stop` ends it as `down` would (SIGTERM, then SIGKILL after 10 s), `start`
#           starts it as `up` does and waits until it serves.
#
# Layout: state under $DUCKHERD_CLUSTER_STATE (/var/lib/duckherd-cluster): pki/, *.kubeconfig,
# logs/<component>.log, pids/<component>.pid, etcd/, containerd/, kubelet/, cni/, volumes/.
# Caches outside the repo under $DUCKHERD_CLUSTER_CACHE (/var/cache/duckherd-cluster):
# <k8s-version>/bin (binaries), go-build, buildah storage, the debootstrap base.
#
# Network: bridge duckherd0 = 10.244.0.1/24 (pods 10.244.0.0/24); Services 10.96.0.0/16.
# The host is reachable from pods at 10.244.0.1 (DUCKHERD_HOST_IP): the API server, the
# kubelet and any test server on the host listen there.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
# shellcheck source=versions.sh
. "$HERE/versions.sh"

STATE=${DUCKHERD_CLUSTER_STATE:-/var/lib/duckherd-cluster}
CACHE=${DUCKHERD_CLUSTER_CACHE:-/var/cache/duckherd-cluster}
BIN=$CACHE/$K8S_VERSION/bin
NODE=duckherd-node
BRIDGE=duckherd0
CNI_NET=duckherd
CLUSTER_CIDR=10.244.0.0/16
NODE_POD_CIDR=10.244.0.0/24
HOST_IP=10.244.0.1
SERVICE_CIDR=10.96.0.0/16
KUBE_SERVICE_IP=10.96.0.1
API_PORT=6443
ETCD_PORT=2379
CTR_SOCK=$STATE/containerd/containerd.sock
PAUSE_IMAGE=localhost/duckherd-pause:1
BASE_IMAGE=localhost/duckherd-base:bookworm
PROJECT_IMAGE=${DUCKHERD_TEST_IMAGE:-localhost/duckherd:dev}
# The project image is built from this directory's Dockerfile (default: the repo checkout).
IMAGE_CONTEXT=${DUCKHERD_IMAGE_CONTEXT:-$REPO}
CGROUP_NAME=duckherd-cluster
PKI=$STATE/pki
ADMIN_KUBECONFIG=$STATE/admin.kubeconfig
# Components in start order; `down` stops them in reverse.
COMPONENTS=(containerd etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy duckherd-provisioner duckherd-dns)

export CONTAINERS_STORAGE_CONF=$CACHE/buildah/storage.conf
export CONTAINERS_REGISTRIES_CONF=$CACHE/buildah/registries.conf
export PATH=$BIN:/usr/local/go/bin:/usr/sbin:/sbin:$PATH

log() { printf '[cluster %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

need_root() { [ "$(id -u)" -eq 0 ] || die "must run as root (it starts a kubelet, containerd, iptables rules)"; }

# write_file PATH [MODE] < content: replaces PATH only if the content changed (kube-proxy, for
# one, exits when its config file is touched).
write_file() {
  local tmp=$1.tmp
  cat >"$tmp"
  [ -n "${2:-}" ] && chmod "$2" "$tmp"
  if [ -f "$1" ] && cmp -s "$tmp" "$1"; then rm -f "$tmp"; else mv -f "$tmp" "$1"; fi
}

# ---------------------------------------------------------------- processes
pidfile() { echo "$STATE/pids/$1.pid"; }
pid_of() { local f; f=$(pidfile "$1"); [ -f "$f" ] && cat "$f" || true; }
# A PID counts as ours only if it still runs the binary we started (guards against PID reuse).
alive() {
  local pid; pid=$(pid_of "$1")
  [ -n "$pid" ] && [ -d "/proc/$pid" ] || return 1
  local exe; exe=$(readlink "/proc/$pid/exe" 2>/dev/null || true)
  [ "${exe##*/}" = "$(binary_name "$1")" ] || [ "${exe##*/}" = "$(binary_name "$1") (deleted)" ]
}
binary_name() { case $1 in containerd) echo containerd ;; *) echo "$1" ;; esac; }

tail_log() {
  local f=$STATE/logs/$1.log
  [ -f "$f" ] || return 0
  echo "----- last lines of $f -----" >&2
  tail -n "${2:-40}" "$f" >&2
  echo "-----" >&2
}

cgroup_dir() { echo "/sys/fs/cgroup/pids/$CGROUP_NAME"; }

# start NAME CMD...: runs CMD in its own session, in the cluster's pids cgroup (so `down` also
# finds the processes it forks, e.g. containerd's shims), logging to logs/NAME.log.
# A component already running is restarted only if its command line, binary or config files
# (CONFIGS[name]) changed since it was started: `up` converges, and is cheap when nothing did.
declare -A CONFIGS=()
start() {
  local name=$1; shift
  local sig sigfile=$STATE/pids/$name.sig
  # shellcheck disable=SC2086
  sig=$( { printf '%s\n' "$@"; stat -c '%Y %s' "$1" 2>/dev/null; cat ${CONFIGS[$name]:-} 2>/dev/null; } | sha256sum | cut -c1-32)
  if alive "$name"; then
    [ "$(cat "$sigfile" 2>/dev/null)" = "$sig" ] && return 0
    log "restarting $name: its command line, binary or configuration changed"
    stop "$name"
  fi
  mkdir -p "$(cgroup_dir)" 2>/dev/null || true
  log "starting $name"
  echo "$sig" >"$sigfile"
  # shellcheck disable=SC2016
  setsid sh -c 'echo $$ > "$0/cgroup.procs" 2>/dev/null; exec "$@"' "$(cgroup_dir)" "$@" \
    >>"$STATE/logs/$name.log" 2>&1 </dev/null 9>&- &
  local pid=$!
  echo "$pid" >"$(pidfile "$name")"
  # Until the wrapper shell has exec'd the component (slow on a loaded machine), or it died.
  for _ in $(seq 1 100); do
    alive "$name" && break
    [ -d "/proc/$pid" ] || break
    sleep 0.1
  done
  sleep 0.3
  alive "$name" || { tail_log "$name"; die "$name exited at once (log: $STATE/logs/$name.log)"; }
}

# wait_for WHAT TIMEOUT LOGNAME CMD...: polls CMD until it succeeds.
wait_for() {
  local what=$1 timeout=$2 comp=$3; shift 3
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    if [ -n "$comp" ] && ! alive "$comp"; then tail_log "$comp"; die "$comp died while waiting for $what"; fi
    if [ $SECONDS -ge $deadline ]; then
      [ -n "$comp" ] && tail_log "$comp"
      die "timed out after ${timeout}s waiting for $what"
    fi
    sleep 1
  done
}

gone() { [ ! -d "/proc/$1" ] || [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" = Z ]; }

stop() {
  local name=$1 pid
  pid=$(pid_of "$name")
  if alive "$name"; then
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    # Until the process is really gone (its ports and files released), not merely exiting.
    for _ in $(seq 1 100); do gone "$pid" && break; sleep 0.1; done
    if ! gone "$pid"; then
      log "$name did not stop in 10 s: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      for _ in $(seq 1 50); do gone "$pid" && break; sleep 0.1; done
    fi
  fi
  rm -f "$(pidfile "$name")" "$STATE/pids/$name.sig"
}

# ---------------------------------------------------------------- install + build
install_deps() {
  local pkgs=(containerd runc containernetworking-plugins buildah debootstrap iptables conntrack
    gcc libc6-dev openssl iproute2 util-linux ca-certificates curl)
  local missing=()
  local p
  for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  [ -x /usr/local/go/bin/go ] || command -v go >/dev/null || die "Go toolchain not found (needed to build Kubernetes)"
}

build_binaries() {
  # (The Go tool's "go: downloading <module>" lines, hundreds on a cold build, are left out.)
  "$HERE/build.sh" 2>&1 | { grep --line-buffered -v '^go: downloading ' || true; } | sed -u 's/^/[build] /' >&2
  [ "${PIPESTATUS[0]}" -eq 0 ] || die "building the cluster binaries failed"
}

# ---------------------------------------------------------------- images
buildah_config() {
  mkdir -p "$CACHE/buildah"
  write_file "$CACHE/buildah/storage.conf" <<EOF
[storage]
driver = "overlay"
graphroot = "$CACHE/buildah/storage"
runroot = "$CACHE/buildah/run"
EOF
  # Only local images: nothing is ever pulled.
  write_file "$CACHE/buildah/registries.conf" <<EOF
unqualified-search-registries = []
EOF
}

debian_mirror() {
  local m=""
  if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    m=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)
  fi
  if [ -z "$m" ] && [ -f /etc/apt/sources.list ]; then
    m=$(awk '$1 == "deb" && $0 !~ /security/ {for (i=2;i<=NF;i++) if ($i ~ /^https?:/) {print $i; exit}}' /etc/apt/sources.list)
  fi
  echo "${m:-http://deb.debian.org/debian}"
}

have_image() { buildah inspect --type image "$1" >/dev/null 2>&1; }

build_pause_image() {
  local src=$HERE/images/pause.c sum
  sum=$(sha256sum "$src" | cut -c1-16)
  if have_image "$PAUSE_IMAGE" && [ "$(cat "$CACHE/buildah/pause.sum" 2>/dev/null)" = "$sum" ]; then return 0; fi
  log "building $PAUSE_IMAGE"
  local dir; dir=$(mktemp -d)
  gcc -static -O2 -o "$dir/pause" "$src"
  local c; c=$(buildah from scratch)
  buildah copy "$c" "$dir/pause" /pause >/dev/null
  buildah config --entrypoint '["/pause"]' --user 65535:65535 "$c"
  buildah commit -q --rm "$c" "$PAUSE_IMAGE" >/dev/null
  rm -rf "$dir"
  echo "$sum" >"$CACHE/buildah/pause.sum"
}

build_base_image() {
  if have_image "$BASE_IMAGE"; then return 0; fi
  local rootfs=$CACHE/base-rootfs mirror
  mirror=$(debian_mirror)
  log "debootstrap bookworm (python3, pip, venv) from $mirror"
  rm -rf "$rootfs"
  debootstrap --variant=minbase --include=python3,python3-pip,python3-venv,ca-certificates \
    bookworm "$rootfs" "$mirror" >"$CACHE/debootstrap.log" 2>&1 ||
    { tail -n 30 "$CACHE/debootstrap.log" >&2; die "debootstrap failed"; }
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/*.log
  log "committing $BASE_IMAGE"
  local c m
  c=$(buildah from scratch)
  m=$(buildah mount "$c")
  tar -C "$rootfs" -cf - . | tar -C "$m" -xf -
  buildah umount "$c" >/dev/null
  buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env LANG=C.UTF-8 --cmd /bin/bash "$c"
  buildah commit -q --rm "$c" "$BASE_IMAGE" >/dev/null
  rm -rf "$rootfs"
}

build_project_image() {
  log "building $PROJECT_IMAGE from $IMAGE_CONTEXT/Dockerfile (layers cached)"
  local out=$STATE/logs/image-build.log
  if ! buildah bud --layers --network host --pull=never \
    --build-arg BASE_IMAGE="$BASE_IMAGE" -v /etc/ssl/certs:/etc/ssl/certs:ro \
    -t "$PROJECT_IMAGE" -f "$IMAGE_CONTEXT/Dockerfile" "$IMAGE_CONTEXT" >"$out" 2>&1; then
    tail -n 40 "$out" >&2
    die "building $PROJECT_IMAGE failed (log: $out)"
  fi
  # Drop the layers of earlier builds that no tagged image uses any more (the cache of the
  # current build stays): each code change would otherwise add ~1 GB.
  buildah rmi --prune >/dev/null 2>&1 || true
}

containerd_has_image() {
  local images
  images=$(ctr -a "$CTR_SOCK" -n k8s.io images ls -q)
  grep -qxF "$1" <<<"$images"
}

# import IMAGE: into containerd's k8s.io namespace, unless that image ID is already there.
import_image() {
  local image=$1 id stampf
  id=$(buildah inspect --type image -f '{{.FromImageID}}' "$image")
  stampf=$STATE/images/$(echo "$image" | tr '/:' '__').id
  if [ "$(cat "$stampf" 2>/dev/null)" = "$id" ] && containerd_has_image "$image"; then
    return 0
  fi
  log "importing $image into containerd"
  local f=$STATE/images/import.tar
  rm -f "$f"
  buildah push -q "$image" "oci-archive:$f:$image" >/dev/null
  ctr -a "$CTR_SOCK" -n k8s.io images import "$f" >/dev/null
  rm -f "$f"
  containerd_has_image "$image" || die "image $image not in containerd after import"
  echo "$id" >"$stampf"
}

build_images() {
  buildah_config
  mkdir -p "$STATE/images" "$STATE/logs"
  build_pause_image
  build_base_image
  build_project_image
  # buildah's overlay driver keeps its storage mounted: release it, nothing should outlive us.
  umount_under "$CACHE/buildah"
}

import_images() {
  local i
  for i in "$PAUSE_IMAGE" "$BASE_IMAGE" "$PROJECT_IMAGE"; do import_image "$i"; done
  umount_under "$CACHE/buildah"
}

# ---------------------------------------------------------------- PKI + kubeconfigs
gen_cert() { # name CN O [SANs] [serverAuth]
  local name=$1 cn=$2 org=$3 sans=${4:-} eku=${5:-clientAuth}
  [ -f "$PKI/$name.crt" ] && return 0
  local subj="/CN=$cn"; [ -n "$org" ] && subj="/O=$org$subj"
  openssl ecparam -name prime256v1 -genkey -noout -out "$PKI/$name.key" 2>/dev/null
  openssl req -new -key "$PKI/$name.key" -subj "$subj" -out "$PKI/$name.csr" 2>/dev/null
  {
    echo "basicConstraints=CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=$eku"
    [ -n "$sans" ] && echo "subjectAltName=$sans"
  } >"$PKI/$name.ext"
  openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
    -days 3650 -sha256 -extfile "$PKI/$name.ext" -out "$PKI/$name.crt" 2>/dev/null
  rm -f "$PKI/$name.csr" "$PKI/$name.ext"
}

gen_pki() {
  mkdir -p "$PKI"
  chmod 700 "$PKI"
  if [ ! -f "$PKI/ca.crt" ]; then
    log "generating PKI in $PKI"
    openssl ecparam -name prime256v1 -genkey -noout -out "$PKI/ca.key" 2>/dev/null
    openssl req -x509 -new -key "$PKI/ca.key" -subj "/CN=duckherd-cluster-ca" -days 3650 -sha256 \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
      -out "$PKI/ca.crt" 2>/dev/null
  fi
  gen_cert apiserver kube-apiserver "" \
    "DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:localhost,IP:$HOST_IP,IP:$KUBE_SERVICE_IP,IP:127.0.0.1" \
    serverAuth
  gen_cert apiserver-kubelet-client kube-apiserver-kubelet-client system:masters
  gen_cert admin duckherd-admin system:masters
  gen_cert controller-manager system:kube-controller-manager ""
  gen_cert scheduler system:kube-scheduler ""
  gen_cert kube-proxy system:kube-proxy ""
  gen_cert kubelet "system:node:$NODE" system:nodes
  gen_cert kubelet-server "system:node:$NODE" system:nodes "DNS:$NODE,DNS:localhost,IP:$HOST_IP,IP:127.0.0.1" serverAuth
  if [ ! -f "$PKI/sa.key" ]; then
    openssl genrsa -out "$PKI/sa.key" 2048 2>/dev/null
    openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
  fi
  chmod 600 "$PKI"/*.key
}

kubeconfig() { # file user cert
  write_file "$1" 600 <<EOF
apiVersion: v1
kind: Config
clusters:
- name: duckherd
  cluster:
    certificate-authority: $PKI/ca.crt
    server: https://$HOST_IP:$API_PORT
users:
- name: $2
  user:
    client-certificate: $PKI/$3.crt
    client-key: $PKI/$3.key
contexts:
- name: duckherd
  context: {cluster: duckherd, user: $2, namespace: default}
current-context: duckherd
EOF
}

gen_kubeconfigs() {
  kubeconfig "$ADMIN_KUBECONFIG" duckherd-admin admin
  kubeconfig "$STATE/controller-manager.kubeconfig" system:kube-controller-manager controller-manager
  kubeconfig "$STATE/scheduler.kubeconfig" system:kube-scheduler scheduler
  kubeconfig "$STATE/kube-proxy.kubeconfig" system:kube-proxy kube-proxy
  kubeconfig "$STATE/kubelet.kubeconfig" "system:node:$NODE" kubelet
}

# ---------------------------------------------------------------- host network
save_sysctls() {
  local f=$STATE/sysctl.orig k
  [ -f "$f" ] && return 0
  # Ours, plus the kernel tunables the kubelet sets (protectKernelDefaults: false).
  for k in net/ipv4/ip_forward net/bridge/bridge-nf-call-iptables net/bridge/bridge-nf-call-ip6tables \
    net/ipv4/conf/all/route_localnet vm/overcommit_memory vm/panic_on_oom kernel/panic \
    kernel/panic_on_oops kernel/keys/root_maxkeys kernel/keys/root_maxbytes; do
    [ -f "/proc/sys/$k" ] && echo "$k $(cat "/proc/sys/$k")"
  done >"$f"
}

setup_network() {
  save_sysctls
  echo 1 >/proc/sys/net/ipv4/ip_forward
  [ -f /proc/sys/net/bridge/bridge-nf-call-iptables ] || die "br_netfilter is not available (needed by kube-proxy)"
  echo 1 >/proc/sys/net/bridge/bridge-nf-call-iptables
  echo 1 >/proc/sys/net/bridge/bridge-nf-call-ip6tables 2>/dev/null || true
  # The bridge exists before any pod so the API server and kubelet can listen on its address.
  if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
    ip link add "$BRIDGE" type bridge
  fi
  # Not `ip addr show | grep -q`: under pipefail, grep leaving at the first match can end
  # `ip` with SIGPIPE, the test fails although the address is there, and `ip addr add` stops
  # the script ("Address already assigned"; seen once in a dozen `up`s).
  grep -q "inet $HOST_IP/" <<<"$(ip addr show dev "$BRIDGE")" || ip addr add "$HOST_IP/24" dev "$BRIDGE"
  ip link set "$BRIDGE" up
  mkdir -p "$STATE/cni/net.d" "$STATE/cni/ipam"
  write_file "$STATE/cni/net.d/10-duckherd.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "$CNI_NET",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$BRIDGE",
      "isGateway": true,
      "ipMasq": true,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$STATE/cni/ipam",
        "ranges": [[{"subnet": "$NODE_POD_CIDR", "gateway": "$HOST_IP"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
}

# Paths outside the state dir that the kubelet and CNI hard-code. Those this cluster created are
# removed again by `down` (recorded at the first `up`).
HOST_PATHS=(/var/lib/kubelet/device-plugins /var/lib/kubelet /var/log/containers /var/lib/cni/results /var/lib/cni /etc/cni/net.d /etc/cni)
record_host_paths() {
  local f=$STATE/host-paths.created p
  [ -f "$f" ] && return 0
  for p in "${HOST_PATHS[@]}"; do [ -e "$p" ] || echo "$p"; done >"$f"
}

cleanup_host_paths() {
  local l id
  # Container log symlinks into our pod logs; the kubelet's device-plugin socket.
  for l in /var/log/containers/*.log; do
    [ -L "$l" ] && [[ "$(readlink "$l")" == "$STATE/"* ]] && rm -f "$l"
  done
  rm -f /var/lib/kubelet/device-plugins/kubelet.sock
  # libcni's result cache of our network's attachments (and their loopbacks).
  for l in /var/lib/cni/results/"$CNI_NET"-*; do
    [ -e "$l" ] || continue
    id=${l#/var/lib/cni/results/"$CNI_NET"-}; id=${id%-*}
    rm -f "$l" "/var/lib/cni/results/cni-loopback-$id-lo"
  done
  rm -f /etc/cni/net.d/cni.lock
  # Directories that did not exist before the first `up`, if now empty.
  [ -f "$STATE/host-paths.created" ] || return 0
  while read -r l; do rmdir "$l" 2>/dev/null || true; done <"$STATE/host-paths.created"
}

restore_sysctls() {
  local f=$STATE/sysctl.orig k v
  [ -f "$f" ] || return 0
  while read -r k v; do echo "$v" >"/proc/sys/$k" 2>/dev/null || true; done <"$f"
  rm -f "$f"
}

# Removes every iptables rule and chain the cluster made: KUBE-* (kubelet, kube-proxy) and CNI-*
# (bridge ipMasq, portmap). Nothing else on this machine uses those prefixes.
iptables_cleanup() {
  local ipt table rules chains script
  for ipt in iptables ip6tables; do
    command -v "$ipt-save" >/dev/null || continue
    for table in filter nat mangle raw; do
      rules=$("$ipt-save" -t "$table" 2>/dev/null) || continue
      chains=$(grep -oE '^:(KUBE-|CNI-)[^ ]+' <<<"$rules" | cut -c2- || true)
      script=$(
        echo "*$table"
        grep -E '^-A [^ ]+ .*-j (KUBE-|CNI-)' <<<"$rules" | grep -vE '^-A (KUBE-|CNI-)' | sed 's/^-A /-D /' || true
        for c in $chains; do echo "-F $c"; done
        for c in $chains; do echo "-X $c"; done
        echo COMMIT
      )
      [ -n "$chains" ] || grep -q '^-D ' <<<"$script" || continue
      "$ipt-restore" --noflush <<<"$script" 2>/dev/null || log "warning: could not remove all $ipt $table rules"
    done
  done
}

# ---------------------------------------------------------------- mounts + cgroups
umount_under() {
  local prefix=$1 m
  # Deepest first.
  for m in $(awk -v p="$prefix" '$5 == p || index($5, p "/") == 1 {print $5}' /proc/self/mountinfo | sort -r -u); do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || log "warning: could not unmount $m"
  done
}

kill_cgroup() { # dir signal
  local d=$1 sig=$2 f pid
  [ -d "$d" ] || return 0
  for f in $(find "$d" -name cgroup.procs 2>/dev/null); do
    while read -r pid; do kill "-$sig" "$pid" 2>/dev/null || true; done <"$f"
  done
}

cgroup_empty() {
  local d=$1 f
  [ -d "$d" ] || return 0
  for f in $(find "$d" -name cgroup.procs 2>/dev/null); do [ -s "$f" ] && return 1; done
  return 0
}

rm_cgroup_tree() { # removes a cgroup directory tree, deepest first
  local d=$1
  [ -d "$d" ] || return 0
  find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null || true
}

# ---------------------------------------------------------------- components
write_containerd_config() {
  mkdir -p "$STATE/containerd"
  write_file "$STATE/containerd/config.toml" <<EOF
version = 2
root = "$STATE/containerd/root"
state = "$STATE/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]
oom_score = 0

[grpc]
  address = "$CTR_SOCK"

[ttrpc]
  address = "$STATE/containerd/containerd-ttrpc.sock"

[debug]
  address = "$STATE/containerd/containerd-debug.sock"

[plugins."io.containerd.internal.v1.opt"]
  path = "$STATE/containerd/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  # This VM lacks CAP_SYS_RESOURCE: oom_score_adj can only be raised.
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  enable_selinux = false
  disable_apparmor = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$STATE/containerd/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$STATE/cni/net.d"
EOF
}

write_kubelet_config() {
  mkdir -p "$STATE/kubelet" "$STATE/pod-logs"
  write_file "$STATE/kubelet-config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# This machine has cgroup v1 only (no systemd): kubelet >= 1.35 refuses v1 unless told.
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupsPerQOS: true
containerRuntimeEndpoint: unix://$CTR_SOCK
address: $HOST_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
tlsCertFile: $PKI/kubelet-server.crt
tlsPrivateKeyFile: $PKI/kubelet-server.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization:
  mode: Webhook
podCIDR: $NODE_POD_CIDR
podLogsDir: $STATE/pod-logs
resolvConf: /etc/resolv.conf
# duckherd-dns (cmd/duckherd-dns) serves Service names on the host's bridge address.
clusterDNS: [$HOST_IP]
clusterDomain: cluster.local
failSwapOn: false
serializeImagePulls: false
# Images come from a local import and cannot be pulled again: never garbage-collect them.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: "100Mi"
  nodefs.available: "1%"
  nodefs.inodesFree: "1%"
  imagefs.available: "1%"
maxPods: 110
EOF
}

start_containerd() {
  write_containerd_config
  CONFIGS[containerd]="$STATE/containerd/config.toml"
  start containerd containerd --config "$STATE/containerd/config.toml"
  wait_for "containerd" 60 containerd ctr -a "$CTR_SOCK" version
}

start_etcd() {
  start etcd "$BIN/etcd" --name "$NODE" --data-dir "$STATE/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$((ETCD_PORT + 1))" \
    --initial-advertise-peer-urls "http://127.0.0.1:$((ETCD_PORT + 1))" \
    --initial-cluster "$NODE=http://127.0.0.1:$((ETCD_PORT + 1))" \
    --listen-metrics-urls "" --quota-backend-bytes 2147483648 --log-level warn
  wait_for "etcd" 60 etcd curl -sf "http://127.0.0.1:$ETCD_PORT/health"
}

api_ready() { kubectl --kubeconfig "$ADMIN_KUBECONFIG" get --raw /readyz; }

start_apiserver() {
  start kube-apiserver "$BIN/kube-apiserver" \
    --advertise-address "$HOST_IP" --bind-address "$HOST_IP" --secure-port "$API_PORT" \
    --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
    --service-cluster-ip-range "$SERVICE_CIDR" --service-node-port-range 30000-32767 \
    --client-ca-file "$PKI/ca.crt" \
    --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
    --kubelet-client-certificate "$PKI/apiserver-kubelet-client.crt" \
    --kubelet-client-key "$PKI/apiserver-kubelet-client.key" \
    --kubelet-certificate-authority "$PKI/ca.crt" \
    --kubelet-preferred-address-types InternalIP,Hostname \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
    --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction \
    --allow-privileged=true --profiling=false --v=1
  wait_for "kube-apiserver /readyz" 180 kube-apiserver api_ready
}

start_controller_manager() {
  start kube-controller-manager "$BIN/kube-controller-manager" \
    --kubeconfig "$STATE/controller-manager.kubeconfig" \
    --authentication-kubeconfig "$STATE/controller-manager.kubeconfig" \
    --authorization-kubeconfig "$STATE/controller-manager.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port 10257 --leader-elect=false \
    --root-ca-file "$PKI/ca.crt" --service-account-private-key-file "$PKI/sa.key" \
    --use-service-account-credentials=true \
    --cluster-signing-cert-file "$PKI/ca.crt" --cluster-signing-key-file "$PKI/ca.key" \
    --service-cluster-ip-range "$SERVICE_CIDR" --cluster-cidr "$CLUSTER_CIDR" \
    --allocate-node-cidrs=false --profiling=false --v=1
}

start_scheduler() {
  start kube-scheduler "$BIN/kube-scheduler" \
    --kubeconfig "$STATE/scheduler.kubeconfig" \
    --authentication-kubeconfig "$STATE/scheduler.kubeconfig" \
    --authorization-kubeconfig "$STATE/scheduler.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port 10259 --leader-elect=false --profiling=false --v=1
}

start_kubelet() {
  write_kubelet_config
  CONFIGS[kubelet]="$STATE/kubelet-config.yaml $STATE/kubelet.kubeconfig"
  start kubelet "$BIN/kubelet" --config "$STATE/kubelet-config.yaml" \
    --kubeconfig "$STATE/kubelet.kubeconfig" --root-dir "$STATE/kubelet" \
    --node-ip "$HOST_IP" --hostname-override "$NODE" --v=1
}

start_kube_proxy() {
  write_file "$STATE/kube-proxy-config.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clientConnection:
  kubeconfig: $STATE/kube-proxy.kubeconfig
hostnameOverride: $NODE
clusterCIDR: $CLUSTER_CIDR
bindAddress: $HOST_IP
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
# NodePorts only on the node's own address (the bridge), not on every interface.
nodePortAddresses: ["primary"]
conntrack:
  # Leave the machine-wide conntrack settings alone.
  maxPerCore: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
EOF
  CONFIGS[kube-proxy]="$STATE/kube-proxy-config.yaml"
  start kube-proxy "$BIN/kube-proxy" --config "$STATE/kube-proxy-config.yaml" --v=1
}

start_provisioner() {
  mkdir -p "$STATE/volumes"
  start duckherd-provisioner "$BIN/duckherd-provisioner" --kubeconfig "$ADMIN_KUBECONFIG" \
    --root "$STATE/volumes" --node "$NODE"
}

start_dns() {
  start duckherd-dns "$BIN/duckherd-dns" --kubeconfig "$ADMIN_KUBECONFIG" \
    --listen "$HOST_IP:53" --cluster-domain cluster.local --resolv-conf /etc/resolv.conf
}

apply_addons() {
  kubectl --kubeconfig "$ADMIN_KUBECONFIG" apply -f - >/dev/null <<EOF
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: standard
  annotations:
    storageclass.kubernetes.io/is-default-class: "true"
provisioner: duckherd.io/hostpath
reclaimPolicy: Delete
volumeBindingMode: WaitForFirstConsumer
EOF
}

node_ready() {
  kubectl --kubeconfig "$ADMIN_KUBECONFIG" get node "$NODE" \
    -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' | grep -qx True
}
default_sa() { kubectl --kubeconfig "$ADMIN_KUBECONFIG" -n default get serviceaccount default; }
kube_service_routed() {
  # kube-proxy programmed the `kubernetes` Service ClusterIP.
  grep -q -- "-d $KUBE_SERVICE_IP/32 .*-j KUBE-SVC-" <<<"$(iptables-save -t nat)"  # no pipe: see the bridge address
}

# ---------------------------------------------------------------- commands
cmd_up() {
  need_root
  local t0=$SECONDS
  mkdir -p "$STATE"/{logs,pids,images} "$CACHE"
  install_deps
  build_binaries
  build_images
  gen_pki
  gen_kubeconfigs
  record_host_paths
  setup_network
  start_containerd
  import_images
  start_etcd
  start_apiserver
  start_controller_manager
  start_scheduler
  start_kubelet
  start_kube_proxy
  start_provisioner
  start_dns
  apply_addons
  log "waiting for node $NODE to be Ready"
  wait_for "node $NODE Ready" 300 kubelet node_ready
  wait_for "ServiceAccount default/default" 120 kube-controller-manager default_sa
  wait_for "kube-proxy rules for the kubernetes Service" 120 kube-proxy kube_service_routed
  log "cluster up in $((SECONDS - t0)) s; use: eval \"\$($0 env)\""
}

cmd_images() {
  need_root
  alive containerd || die "the cluster is not up (hack/cluster/cluster.sh up)"
  build_images
  import_images
}

cmd_down() {
  need_root
  [ -d "$STATE" ] || { log "nothing to stop"; return 0; }
  stop duckherd-dns
  stop duckherd-provisioner
  stop kube-proxy
  if [ -x "$BIN/kube-proxy" ]; then
    "$BIN/kube-proxy" --cleanup >"$STATE/logs/kube-proxy-cleanup.log" 2>&1 || true
  fi
  stop kubelet
  # Every container of every pod (kubelet's cgroupfs driver puts them under /kubepods).
  local h
  for _ in 1 2 3 4 5; do
    for h in /sys/fs/cgroup/*/kubepods; do kill_cgroup "$h" KILL; done
    sleep 0.3
    local empty=1
    for h in /sys/fs/cgroup/*/kubepods; do cgroup_empty "$h" || empty=0; done
    [ $empty -eq 1 ] && break
  done
  stop kube-scheduler
  stop kube-controller-manager
  stop kube-apiserver
  stop etcd
  stop containerd
  # Whatever the components forked (containerd shims) lives in the cluster's cgroup.
  kill_cgroup "$(cgroup_dir)" TERM
  for _ in $(seq 1 20); do cgroup_empty "$(cgroup_dir)" && break; sleep 0.25; done
  kill_cgroup "$(cgroup_dir)" KILL
  for _ in $(seq 1 20); do cgroup_empty "$(cgroup_dir)" && break; sleep 0.25; done
  cgroup_empty "$(cgroup_dir)" || log "warning: processes left in $(cgroup_dir)"
  umount_under "$STATE"
  umount_under "$CACHE/buildah"
  # containerd's state dir is volatile (like /run): dead shims' sockets, sandbox mounts.
  rm -rf "$STATE/containerd/state" "$STATE/containerd/runc"
  # containerd 1.6 puts shim sockets in /run/containerd/s whatever its state dir: remove those
  # nobody listens on any more (ours, now that every shim is gone), and the dirs if empty.
  if [ -d /run/containerd/s ]; then
    local listening sock
    listening=$(ss -xlH 2>/dev/null | awk '{print $5}')
    for sock in /run/containerd/s/*; do
      [ -S "$sock" ] || continue
      grep -qxF "$sock" <<<"$listening" || rm -f "$sock"
    done
    rmdir /run/containerd/s 2>/dev/null || true
  fi
  rmdir /run/containerd/runc/k8s.io /run/containerd/runc /run/containerd 2>/dev/null || true
  iptables_cleanup
  if ip link show "$BRIDGE" >/dev/null 2>&1; then ip link del "$BRIDGE"; fi
  # veths of pods go with their network namespaces; remove any left behind on our bridge.
  local v
  for v in $(ip -o link show type veth 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1); do
    grep -q "master $BRIDGE" <<<"$(ip -d link show "$v" 2>/dev/null)" && ip link del "$v" 2>/dev/null || true
  done
  restore_sysctls
  cleanup_host_paths
  for h in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/*/"$CGROUP_NAME"; do rm_cgroup_tree "$h"; done
  rm -f "$STATE"/pids/*.pid "$STATE"/pids/*.sig
  log "cluster down"
}

cmd_purge() {
  cmd_down
  log "removing $STATE"
  rm -rf "$STATE"
}

# The start function of each component (what `up` runs for it).
start_component() {
  case $1 in
    containerd) start_containerd ;;
    etcd) start_etcd ;;
    kube-apiserver) start_apiserver ;;
    kube-controller-manager) start_controller_manager ;;
    kube-scheduler) start_scheduler ;;
    kubelet) start_kubelet ;;
    kube-proxy) start_kube_proxy ;;
    duckherd-provisioner) start_provisioner ;;
    duckherd-dns) start_dns ;;
    *) die "no component $1 (one of: ${COMPONENTS[*]})" ;;
  esac
}

# stop|start|restart COMPONENT: one component of a cluster that is up otherwise.
cmd_component() {
  local action=$1 name=${2:-}
  [ -n "$name" ] || die "usage: $0 $action COMPONENT (one of: ${COMPONENTS[*]})"
  [[ " ${COMPONENTS[*]} " == *" $name "* ]] || die "no component $name (one of: ${COMPONENTS[*]})"
  [ -f "$ADMIN_KUBECONFIG" ] || die "the cluster was never up (hack/cluster/cluster.sh up)"
  case $action in
    stop) alive "$name" || log "$name is not running"; stop "$name" ;;
    start) start_component "$name" ;;
    restart) stop "$name"; start_component "$name" ;;
  esac
}

cmd_status() {
  local c rc=0
  for c in "${COMPONENTS[@]}"; do
    if alive "$c"; then printf '%-24s running (pid %s)\n' "$c" "$(pid_of "$c")"; else
      printf '%-24s stopped\n' "$c"; rc=1; fi
  done
  if [ $rc -eq 0 ]; then
    kubectl --kubeconfig "$ADMIN_KUBECONFIG" get nodes -o wide 2>&1 || rc=1
  fi
  return $rc
}

cmd_env() {
  cat <<EOF
export KUBECONFIG=$ADMIN_KUBECONFIG
export PATH=$BIN:\$PATH
export DUCKHERD_HOST_IP=$HOST_IP
export DUCKHERD_TEST_IMAGE=$PROJECT_IMAGE
export DUCKHERD_BASE_IMAGE=$BASE_IMAGE
EOF
}

# One cluster.sh at a time changes the cluster (two test sessions may call `up` together).
lock() {
  mkdir -p "$CACHE"
  exec 9>"$CACHE/cluster.lock"
  if ! flock -n 9; then
    log "another cluster.sh is running; waiting for it"
    flock 9
  fi
}

case ${1:-} in
  up | down | purge | images | build-images | stop | start | restart)
    need_root
    lock
    # Who changed the cluster when: several sessions may share this machine.
    echo "$(date -u +%FT%TZ) $* pid=$$ by: $(tr '\0' ' ' </proc/$PPID/cmdline 2>/dev/null | cut -c1-200)" \
      >>"$CACHE/commands.log"
    ;;
esac
case ${1:-} in
  up) cmd_up ;;
  down) cmd_down ;;
  purge) cmd_purge ;;
  status) cmd_status ;;
  env) cmd_env ;;
  images) cmd_images ;;
  build-images) need_root; install_deps; build_images ;;
  stop | start | restart) cmd_component "$1" "${2:-}" ;;
  *) echo "usage: $0 up|down|status|env|images|build-images|purge|stop|start|restart COMPONENT" >&2; exit 2 ;;
esac
