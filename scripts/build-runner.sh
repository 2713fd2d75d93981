#!/usr/bin/env bash
# Builds the in-container runner (src/runner/amp-runner.c, docs/runner.md) into dist/runner/amp-runner:
# static, so it runs in any Linux image (FROM scratch, musl, glibc). Part of `npm run build`.
# Without a C compiler the build goes on without it, and workers fall back to waiting for docker's
# own exit (they say so in their log); scripts/setup.sh installs gcc and libc6-dev.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cc=${CC:-cc}
out=dist/runner/amp-runner
if ! command -v "$cc" >/dev/null 2>&1; then
  echo "build-runner: no C compiler ($cc): dist/runner/amp-runner not built; workers run calls without it (install gcc and libc6-dev)" >&2
  exit 0
fi
mkdir -p "$(dirname "$out")"
"$cc" -static -Os -Wall -Wextra -Werror -o "$out.tmp" src/runner/amp-runner.c
strip "$out.tmp" 2>/dev/null || true
chmod 0755 "$out.tmp"
mv "$out.tmp" "$out"
