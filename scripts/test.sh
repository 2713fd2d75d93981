#!/usr/bin/env bash
# Sets up everything the tests need (scripts/setup.sh), builds the test images and runs the whole
# test suite: unit, command and integration tests. This is what CI runs (.ci/run).
#   sudo scripts/test.sh        (or as root)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/setup.sh

printf '\033[1m==> %s\033[0m\n' "building the test images (FROM scratch, busybox-static)" >&2
npx --no-install tsx --eval \
  "import('./test/helpers/images.ts').then((m) => m.ensureTestImages()).catch((e) => { console.error(e.message); process.exit(1) })" \
  </dev/null

printf '\033[1m==> %s\033[0m\n' "npm test" >&2
npm test </dev/null
