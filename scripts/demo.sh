#!/usr/bin/env bash
# scripts/demo.sh - ephemera on this machine in one command: installs the
# dependencies, builds, starts `eph serve` in the background, registers
# examples/shop as a project and starts an environment `demo` of it.
#
# Everything lives under .eph-demo/ in the repository (gitignored):
#   data/         the server's data directory (store, git caches, environments);
#                 as root, when the user environments run as (`nobody`) cannot
#                 reach it there, /var/lib/ephemera-demo/<hash>/data instead
#   client.json   the CLI's config: export EPH_CONFIG=$PWD/.eph-demo/client.json
#   password      the password of user `demo` (admin), for signing in in a
#                 browser; made on the first run, mode 0600
#   server.yaml   the server's settings
#   serve.pid     the server's pid; serve.log its log (logfmt), serve.out its stdout
#   repos/shop    a git repository made from examples/shop (branches main, feature-x)
#
# Re-running is safe: a running demo server, the registered project and the
# environment are reused; the repository picks up changes to examples/shop.
#
# Settings (environment variables):
#   EPH_DEMO_LISTEN      HOST:PORT of the server       (default 127.0.0.1:8080)
#   EPH_DEMO_PORTS       port range for the services   (default 21000-21099)
#   EPH_DEMO_BUILD       release or debug              (default release)
#   EPH_DEMO_DEADLINE_S  how long to wait for things   (default 120)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
DEMO=$ROOT/.eph-demo
LISTEN=${EPH_DEMO_LISTEN:-127.0.0.1:8080}
PORTS=${EPH_DEMO_PORTS:-21000-21099}
BUILD=${EPH_DEMO_BUILD:-release}
DEADLINE_S=${EPH_DEMO_DEADLINE_S:-120}
URL=http://$LISTEN
PIDFILE=$DEMO/serve.pid
PY=/usr/bin/python3
export EPH_CONFIG=$DEMO/client.json
DATA=$DEMO/data
PWFILE=$DEMO/password

say() { printf '==> %s\n' "$*"; }
die() { printf 'demo: %s\n' "$*" >&2; exit 1; }

case $BUILD in
    release|debug) ;;
    *) die "EPH_DEMO_BUILD must be release or debug, not '$BUILD'" ;;
esac

say "dependencies"
bash scripts/install-deps.sh

say "build ($BUILD)"
make -j"$(nproc 2>/dev/null || echo 2)" MODE="$BUILD"
EPH=$ROOT/build/$BUILD/eph

mkdir -p "$DEMO/repos"

# As root, environments run as `nobody` (the server's run_as setting), who
# must be able to reach their directories under the data directory. A clone
# under /root is not reachable: keep the data in /var/lib then, one directory
# per clone.
if [[ $(id -u) -eq 0 ]] && ! setpriv --reuid=nobody --regid=nogroup --clear-groups \
        test -x "$DEMO" 2>/dev/null; then
    DATA=/var/lib/ephemera-demo/$(printf '%s' "$DEMO" | sha256sum | cut -c1-12)/data
    mkdir -p "$(dirname "$DATA")"
    chmod 711 /var/lib/ephemera-demo "$(dirname "$DATA")"
fi

# ----------------------------------------------------------------- the server

server_pid() {
    # The pid in the pid file, if that process is still our `eph serve`.
    local pid
    [[ -f $PIDFILE ]] || return 1
    pid=$(cat "$PIDFILE")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    [[ -r /proc/$pid/cmdline ]] || return 1
    grep -qF -- "$DATA" "/proc/$pid/cmdline" || return 1
    echo "$pid"
}

healthy() {
    curl --noproxy '*' -fsS -o /dev/null --max-time 2 "$URL/api/v1/healthz" 2>/dev/null
}

if pid=$(server_pid); then
    say "eph serve already running (pid $pid)"
else
    say "starting eph serve on $LISTEN"
    cat >"$DEMO/server.yaml" <<EOF
# written by scripts/demo.sh
allowed_repos: "$DEMO/repos/*"
EOF
    # setsid: its own session, so closing this terminal does not stop it.
    setsid "$EPH" serve --data-dir "$DATA" --listen "$LISTEN" --port-range "$PORTS" \
        --config "$DEMO/server.yaml" </dev/null >>"$DEMO/serve.out" 2>>"$DEMO/serve.log" &
    pid=$!
    echo "$pid" >"$PIDFILE"
fi

deadline=$((SECONDS + DEADLINE_S))
until healthy; do
    if ! kill -0 "$pid" 2>/dev/null; then
        rm -f "$PIDFILE"
        tail -n 20 "$DEMO/serve.log" >&2 || true
        die "eph serve exited (is $LISTEN taken? set EPH_DEMO_LISTEN); log: $DEMO/serve.log"
    fi
    ((SECONDS < deadline)) || die "eph serve did not answer $URL/api/v1/healthz in ${DEADLINE_S}s"
    sleep 0.1
done
[[ -f $EPH_CONFIG ]] || die "no client config at $EPH_CONFIG (was $DATA made by another setup?)"
TOKEN=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["token"])' "$EPH_CONFIG")

# ----------------------------------------------------------------- a user for the browser

# Every URL is behind sign-in: user `demo` (admin) signs in with the password
# kept in $PWFILE. Made once; should the user be gone (a new data directory),
# it is made again with the same password.
if [[ ! -s $PWFILE ]]; then
    (umask 077; head -c 18 /dev/urandom | base64 | tr '+/' '-_' >"$PWFILE")
fi
if "$EPH" user ls -o json | "$PY" -c '
import json, sys
users = json.load(sys.stdin)
users = users["users"] if isinstance(users, dict) else users
sys.exit(0 if any(u["name"] == "demo" for u in users) else 1)'; then
    say "user demo exists"
else
    say "adding user demo (admin)"
    "$EPH" user add demo --role admin --password-stdin <"$PWFILE" >/dev/null
fi

# ----------------------------------------------------------------- the repository

REPO=$DEMO/repos/shop
say "repository $REPO"
git_() {
    git -C "$REPO" -c user.name="ephemera demo" -c user.email=demo@ephemera.invalid \
        -c init.defaultBranch=main -c advice.detachedHead=false "$@"
}
if [[ ! -d $REPO/.git ]]; then
    mkdir -p "$REPO"
    git_ init -q -b main
fi
if git_ rev-parse -q --verify refs/heads/main >/dev/null; then
    git_ checkout -q main
fi
# The working tree mirrors examples/shop (deletions included); commit what changed.
find "$REPO" -mindepth 1 -maxdepth 1 ! -name .git -exec rm -rf {} +
cp -a examples/shop/. "$REPO/"
find "$REPO" -name __pycache__ -prune -exec rm -rf {} +
git_ add -A
git_ diff --cached --quiet || git_ commit -q -m "shop from examples/shop"
if ! git_ rev-parse -q --verify refs/heads/feature-x >/dev/null; then
    git_ checkout -q -b feature-x
    echo "feature x" >"$REPO/FEATURE"
    git_ add FEATURE
    git_ commit -q -m "feature x"
    git_ checkout -q main
fi

# ----------------------------------------------------------------- project and environment

api_status() {
    curl --noproxy '*' -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN" \
        "$URL/api/v1/$1"
}

if [[ $(api_status projects/shop) == 200 ]]; then
    say "project shop already registered"
else
    say "registering project shop"
    "$EPH" project add shop --repo "$REPO"
fi

phase() {
    "$EPH" get demo -o json 2>/dev/null |
        "$PY" -c 'import json,sys; print(json.load(sys.stdin)["phase"])' 2>/dev/null || true
}

case $(phase) in
    ready|pending|preparing|starting)
        say "environment demo exists" ;;
    "")
        ;;
    *)  # failed, or on its way out: start afresh
        say "environment demo is $(phase): removing it"
        "$EPH" rm demo --wait ;;
esac
if [[ -z $(phase) ]]; then
    say "eph up shop --name demo --wait"
    "$EPH" up shop --name demo --wait
fi
while [[ $(phase) != ready ]]; do
    [[ $(phase) != failed ]] || die "environment demo failed: $EPH get demo"
    ((SECONDS < deadline + DEADLINE_S)) || die "environment demo not ready in time"
    sleep 0.2
done

# ----------------------------------------------------------------- how to use it

echo
echo "ephemera is running: $URL (pid $(cat "$PIDFILE"), log $DEMO/serve.log)"
echo
echo "environment demo:"
"$EPH" get demo -o json | "$PY" -c '
import json, sys
env = json.load(sys.stdin)
for s in env["services"]:
    where = s["url"] or "127.0.0.1:%d (internal)" % s["port"]
    print("  %-4s %-28s %s" % (s["name"], where, s["state"]))
print("  expires %s" % env["expires_at"])'
cat <<EOF

sign in in a browser (any URL above asks for it) as:
  user demo, password $(cat "$PWFILE")     (kept in $PWFILE)

admin token: $TOKEN

use the CLI:
  export EPH_CONFIG=$EPH_CONFIG
  alias eph=$EPH
  eph ls
  eph get demo
  eph logs demo api
  eph up shop --branch feature-x --name fx --param dataset=edge-cases --wait
  eph extend demo 1h
  eph rm fx --wait
  eph events

stop it (environments outlive the server: remove them first):
  $EPH rm demo --wait
  kill \$(cat $PIDFILE)
EOF
