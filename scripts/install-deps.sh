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
# redis on loopback ports; the distribution's system service is neither
# started by this script nor needed (policy-rc.d keeps apt from starting it).
set -euo pipefail

PACKAGES=(
    build-essential pkg-config git clang libclang-rt-14-dev
    libuv1-dev libhttp-parser-dev libjansson-dev libfyaml-dev libsqlite3-dev
    libcurl4-openssl-dev libssl-dev libcriterion-dev
    python3 python3-pytest python3-requests
    redis-server procps curl
)

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

# Keep apt from starting redis-server (or any other daemon) as a system
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

# On a machine booted with systemd, the package enables redis-server at boot:
# undo that when this run is what installed it.
if [[ " ${missing[*]} " == *" redis-server "* && -d /run/systemd/system ]]; then
    "${SUDO[@]}" systemctl disable --now redis-server >/dev/null 2>&1 || true
fi
