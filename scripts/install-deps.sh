#!/usr/bin/env bash
# scripts/install-deps.sh - installs the Debian packages ephemera builds and
# tests with, and nothing else.
#
# Idempotent: asks dpkg which packages are missing and installs only those
# (running `apt-get update` first only then), so a second run does nothing and
# needs no network. Uses sudo when not root. Other processes may hold the apt
# lock on shared machines: wait for it rather than fail.
#
# redis-server is installed for the examples and tests, which run their own
# redis on loopback ports; nginx and wrk for bench/gateway.sh, which runs its
# own nginx with its own config on loopback ports. Neither distribution
# service is started by this script nor needed (policy-rc.d keeps apt from
# starting them; should one start anyway, it is stopped again, so that
# nothing is left listening on port 80). valgrind and linux-perf serve
# bench/gateway.sh's EPH_BENCH_CALLGRIND and EPH_BENCH_PERF (instruction
# counts, profiles). python3-websockets is the WebSocket peer of the gateway
# tests.
set -euo pipefail

PACKAGES=(
    build-essential pkg-config git clang libclang-rt-14-dev
    libuv1-dev libhttp-parser-dev libjansson-dev libfyaml-dev libsqlite3-dev
    libcurl4-openssl-dev libssl-dev libcriterion-dev libargon2-dev
    python3 python3-pytest python3-requests python3-websockets
    redis-server procps curl iproute2 tzdata
    nginx wrk valgrind linux-perf
)

# Node.js and npm run the end-to-end tests' OpenID provider (npm package
# oidc-provider, installed by scripts/test.sh into tests/e2e/peers/oidc).
# Machines of this kind may have them from another source already (seen:
# nodesource's nodejs, which bundles npm and conflicts with Debian's npm):
# only when `node` or `npm` is missing are Debian's packages asked for.
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    PACKAGES+=(nodejs npm)
fi

missing=()
for pkg in "${PACKAGES[@]}"; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
    if [[ "$status" != "installed" ]]; then
        missing+=("$pkg")
    fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
    echo "install-deps: all ${#PACKAGES[@]} packages present"
    exit 0
fi

if [[ $(id -u) -eq 0 ]]; then
    SUDO=()
elif command -v sudo >/dev/null; then
    SUDO=(sudo)
else
    echo "install-deps: missing ${missing[*]}, and not root and no sudo to install them" >&2
    exit 1
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive

# Keep apt from starting redis-server, nginx (or any other daemon) as a system
# service while these packages install: exit code 101 of policy-rc.d means
# "action forbidden". Only when no policy is in place already, and removed
# again afterwards.
policy=/usr/sbin/policy-rc.d
own_policy=0
if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$policy" >/dev/null
    "${SUDO[@]}" chmod 755 "$policy"
    own_policy=1
fi
cleanup() {
    if [[ $own_policy -eq 1 ]]; then
        "${SUDO[@]}" rm -f "$policy"
    fi
}
trap cleanup EXIT

"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get -o DPkg::Lock::Timeout=600 update
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends "${missing[@]}"

# On a machine booted with systemd, the packages enable redis-server and
# nginx at boot: undo that when this run is what installed them.
for svc in redis-server nginx; do
    if [[ " ${missing[*]} " == *" $svc "* && -d /run/systemd/system ]]; then
        "${SUDO[@]}" systemctl disable --now "$svc" >/dev/null 2>&1 || true
    fi
done

# A policy-rc.d that was already in place may have let the package start
# nginx's system service (on its default site, port 80): stop that master by
# its pid file, the only nginx this script may have started.
if [[ " ${missing[*]} " == *" nginx "* && -s /run/nginx.pid ]]; then
    "${SUDO[@]}" start-stop-daemon --stop --quiet --pidfile /run/nginx.pid \
        --exec /usr/sbin/nginx --retry QUIT/5/TERM/5 >/dev/null 2>&1 || true
fi
if command -v ss >/dev/null && [[ -n $(ss -Hltn 'sport = :80' 2>/dev/null) ]]; then
    echo "install-deps: warning: something listens on port 80 (not started by this script)" >&2
fi
