#!/usr/bin/env bash
# Sets up everything the tests need (scripts/setup.sh), builds the test images and runs the whole
# test suite: unit, command and integration tests, then the cluster fault tests (npm run test:cluster).
# This is what CI runs (.ci/run).
#   sudo scripts/test.sh        (or as root)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/setup.sh

printf '\033[1m==> %s\033[0m\n' "building the test images (FROM scratch, busybox-static)" >&2
npx --no-install tsx --eval \
  "import('./test/helpers/images.ts').then((m) => m.ensureTestImages()).catch((e) => { console.error(e.message); process.exit(1) })" \
  </dev/null

log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
printf '\033[1m==> %s\033[0m\n' "npm test" >&2
npm test </dev/null 2>&1 | tee "$log" || status=$?
# The fault tests on several test hosts (network namespaces, a NATS and an etcd cluster, 3 dockerds).
printf '\033[1m==> %s\033[0m\n' "npm run test:cluster" >&2
npm run test:cluster </dev/null 2>&1 | tee -a "$log" || status=$?
# One plain closing line for CI, from mocha's summaries ("N passing", "N failing", "N pending"), added up.
count() { sed 's/\x1b\[[0-9;]*m//g' "$log" | sed -n "s/^ *\([0-9][0-9]*\) $1.*/\1/p" | awk '{n += $1} END {print n + 0}'; }
passed=$(count passing); failed=$(count failing); skipped=$(count pending)
echo "tests: ${passed:-0} passed, ${failed:-0} failed, ${skipped:-0} skipped"
if [ "${passed:-0}" -eq 0 ] && [ "$status" -eq 0 ]; then echo "no test ran" >&2; status=1; fi
exit "$status"
