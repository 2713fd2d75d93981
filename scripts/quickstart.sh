#!/usr/bin/env bash
# The README's first quick-start command, for a fresh Debian/Ubuntu machine (as root, or a user with sudo):
# installs what is missing, starts the stack (`amp up`) in the background, builds the demo function
# image offline, registers it and calls it over HTTP and through `amp function invoke`.
# Safe to run again: a stack that already answers is reused.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'quickstart: %s\n' "$*" >&2; exit 1; }

port="${AMP_PORT:-4242}"
export AMP_SERVER="${AMP_SERVER:-http://localhost:$port}"
state="${AMP_QUICKSTART_DIR:-/tmp/amp-quickstart}"
log="$state/amp-up.log"
pidfile="$state/amp-up.pid"
health="http://127.0.0.1:$port/_amp/v1/health"
amp() { node bin/run.js "$@"; }

# 1. Packages (docker.io, nats-server, etcd-server, busybox-static, Go for the demo), dockerd, npm ci, build.
if command -v go >/dev/null 2>&1; then scripts/setup.sh; else scripts/setup.sh golang-go; fi

# 2. The demo function image, built without a registry.
say "building the demo function image amp-demo-function:latest"
examples/functions/demo-function/build.sh amp-demo-function:latest

# 3. The stack: nats-server, etcd, a listener and a worker.
if curl -sf -o /dev/null "$health"; then
  say "amp already answers on port $port: using it"
else
  mkdir -p "$state"
  say "starting amp up in the background (log: $log)"
  # setsid: its own session, so a Ctrl-C in this terminal later does not stop it.
  setsid nohup node bin/run.js up --port "$port" </dev/null >>"$log" 2>&1 &
  echo $! >"$pidfile"
  for _ in $(seq 1 120); do
    curl -sf -o /dev/null "$health" && break
    kill -0 "$(cat "$pidfile")" 2>/dev/null || { tail -n 20 "$log" >&2; die "amp up exited, see $log"; }
    sleep 0.5
  done
  curl -sf -o /dev/null "$health" || { tail -n 20 "$log" >&2; die "amp up did not answer on $health within 60 s, see $log"; }
fi

# 4. Register the demo function (replacing any earlier one of that name).
say "amp function create demo amp-demo-function:latest --replace"
amp function create demo amp-demo-function:latest --replace

# 5. Call it both ways.
say "printf 'hello amp functions\\n' | curl -s localhost:$port/demo --data-binary @-"
http_result="$(printf 'hello amp functions\n' | curl -s "localhost:$port/demo" --data-binary @-)"
printf '%s\n' "$http_result"
case "$http_result" in
  *"Hello Amp Functions"*) ;;
  *) die "the HTTP call did not return the demo's answer (see above and $log)" ;;
esac

say "printf 'hello amp functions\\n' | amp function invoke demo"
cli_result="$(printf 'hello amp functions\n' | amp function invoke demo)"
printf '%s\n' "$cli_result"

cat >&2 <<EOF

Over HTTP:                   $http_result
With amp function invoke:    $cli_result

amp runs in the background (pid $(cat "$pidfile" 2>/dev/null || echo '?'), log $log).
Try:   node bin/run.js function ls          (or \`npm link\` once, then just \`amp function ls\`)
Stop:  kill \$(cat $pidfile)                 (amp up stops its listener, worker, nats-server and etcd)
EOF
