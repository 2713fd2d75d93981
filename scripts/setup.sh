#!/usr/bin/env bash
# Installs what amp and its tests need on Debian/Ubuntu, starts dockerd, installs the npm packages
# and builds amp. Safe to run again: it only does what is still missing.
#   sudo scripts/setup.sh        (or as root)
# Extra apt packages can be passed as arguments, e.g. `scripts/setup.sh golang-go`.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'setup: %s\n' "$*" >&2; exit 1; }

if [ "$(id -u)" -eq 0 ]; then
  SUDO=()
elif command -v sudo >/dev/null 2>&1; then
  SUDO=(sudo)
else
  die "run me as root (or install sudo): I install Debian packages and start dockerd"
fi

# --- Node.js -------------------------------------------------------------------------------------
command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 ||
  die "Node.js >= 20.19 with npm is required (Debian's nodejs 18 is too old): see https://nodejs.org/en/download"
node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>20||(a===20&&b>=19)?0:1)' ||
  die "Node.js >= 20.19 is required, found $(node --version): see https://nodejs.org/en/download"

# --- Debian packages -----------------------------------------------------------------------------
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ]; }

missing=()
# Any working Docker will do (docker-ce too: installing docker.io next to it would conflict).
if ! have dockerd && ! docker info >/dev/null 2>&1; then missing+=(docker.io); fi
have nats-server || missing+=(nats-server)
have etcd || missing+=(etcd-server)
# The test images are FROM scratch and need a statically linked busybox.
installed busybox-static || missing+=(busybox-static)
# npm run build compiles the in-container runner (src/runner/amp-runner.c) statically: gcc and glibc's
# static libc. The test images include a musl one, built with musl-gcc.
have gcc || missing+=(gcc)
installed libc6-dev || missing+=(libc6-dev)
installed musl-tools || missing+=(musl-tools)
have curl || missing+=(curl)
# The TLS tests make throwaway certificates with the openssl CLI.
have openssl || missing+=(openssl)
# The systemd unit tests use python3 for a unix datagram socket (Node has none) and systemd-analyze.
have python3 || missing+=(python3)
have systemd-analyze || missing+=(systemd)
for pkg in "$@"; do installed "$pkg" || missing+=("$pkg"); done

systemd_running() { [ "$(cat /proc/1/comm 2>/dev/null)" = systemd ]; }

if [ "${#missing[@]}" -gt 0 ]; then
  say "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  policy_created=""
  # Without systemd the packages' maintainer scripts would try (and fail) to start their services;
  # policy-rc.d exit 101 tells them not to. amp starts what it needs itself.
  if ! systemd_running && [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee /usr/sbin/policy-rc.d >/dev/null
    "${SUDO[@]}" chmod 755 /usr/sbin/policy-rc.d
    policy_created=yes
  fi
  trap 'if [ -n "$policy_created" ]; then "${SUDO[@]}" rm -f /usr/sbin/policy-rc.d; fi' EXIT
  "${SUDO[@]}" apt-get update -qq
  "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null
  # The Debian packages enable their own services under systemd; amp up and the tests start their
  # own nats-server and etcd, so stop those to keep ports 4222/2379 for `amp up`.
  if systemd_running; then
    for unit in nats-server etcd; do "${SUDO[@]}" systemctl disable --now "$unit" >/dev/null 2>&1 || true; done
  fi
fi

# --- dockerd -------------------------------------------------------------------------------------
if ! "${SUDO[@]}" docker info >/dev/null 2>&1; then
  if systemd_running; then
    say "starting docker (systemctl)"
    "${SUDO[@]}" systemctl enable --now docker
    log="journalctl -u docker"
  else
    log=/var/log/dockerd.log
    say "starting dockerd in the background (no systemd here), log in $log"
    "${SUDO[@]}" sh -c "nohup dockerd >>$log 2>&1 </dev/null &"
  fi
  for _ in $(seq 1 60); do
    "${SUDO[@]}" docker info >/dev/null 2>&1 && break
    sleep 1
  done
  "${SUDO[@]}" docker info >/dev/null 2>&1 || die "dockerd did not come up within 60 s: look at $log"
fi
docker info >/dev/null 2>&1 ||
  die "dockerd runs but $(id -un) may not use it: sudo usermod -aG docker $(id -un), then log in again"

# --- npm packages and build ----------------------------------------------------------------------
# npm ci starts from scratch every time; skip it when node_modules matches package-lock.json.
stamp=node_modules/.amp-setup-lock-sha256
lock_sum=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$lock_sum" ]; then
  say "npm ci"
  npm ci --no-audit --no-fund </dev/null
  echo "$lock_sum" >"$stamp"
fi
say "npm run build"
npm run build --silent </dev/null

say "setup done: docker $(docker version --format '{{.Server.Version}}'), $(nats-server --version 2>/dev/null || /usr/sbin/nats-server --version), etcd $(etcd --version | sed -n 's/^etcd Version: //p'), node $(node --version)"
