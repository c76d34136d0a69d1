#!/usr/bin/env bash
# Build SeaweedFS's `weed` (Apache-2.0), the S3-compatible server the bucket-backup tests run
# against, from the Go module proxy into a cache, once; prints the binary's path.
#
# `go install .../weed@<version>` is refused (the module's go.mod has a replace directive), so
# the module is downloaded and built inside its own directory, where the directive applies.
# The build compiles a large dependency tree (cloud SDKs, databases): measured in docs/backup.md.
set -euo pipefail

VERSION=${SEAWEEDFS_VERSION:-v0.0.0-20261109003541-7506e5f91cd6}
CACHE=${DUCKHERD_S3_CACHE:-/var/cache/duckherd-s3}
BINARY="$CACHE/weed-$VERSION"

if [[ -x "$BINARY" ]]; then
  echo "$BINARY"
  exit 0
fi
GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
mkdir -p "$CACHE"
module_dir=$("$GO" mod download -json "github.com/seaweedfs/seaweedfs@$VERSION" |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')
started=$(date +%s)
(cd "$module_dir" && CGO_ENABLED=0 "$GO" build -trimpath -ldflags="-s -w" -o "$BINARY.tmp" ./weed) >&2
mv "$BINARY.tmp" "$BINARY"
echo "built $BINARY in $(($(date +%s) - started)) s" >&2
echo "$BINARY"
