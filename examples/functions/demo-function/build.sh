#!/usr/bin/env bash
# Builds the demo function image without any registry: compiles a static binary with the host's Go
# (Debian: apt-get install golang-go) and packs it into an image FROM scratch.
#   examples/functions/demo-function/build.sh [TAG]      (default amp-demo-function:latest)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
tag="${1:-amp-demo-function:latest}"
docker="${AMP_DOCKER:-docker}"

command -v go >/dev/null 2>&1 || { echo "build.sh: Go is not installed: apt-get install golang-go" >&2; exit 1; }

context="$(mktemp -d)"
trap 'rm -rf "$context"' EXIT

# No dependencies to download: keep the build off the network. Go needs a cache dir even under CI.
export CGO_ENABLED=0 GOPROXY=off GOFLAGS=-mod=mod
[ -n "${GOCACHE:-}" ] || [ -n "${XDG_CACHE_HOME:-}" ] || [ -n "${HOME:-}" ] || export GOCACHE=/tmp/amp-go-cache
(cd "$here" && go build -trimpath -ldflags='-s -w' -o "$context/amp-demo-function" .)

cp "$here/Dockerfile.scratch" "$context/Dockerfile"
# Quiet unless it fails (the legacy builder warns about itself on every build).
if ! out="$("$docker" build -t "$tag" "$context" 2>&1)"; then
  echo "$out" >&2
  exit 1
fi
echo "built $tag" >&2
