#!/usr/bin/env bash
# scripts/test.sh - the one test command: dependencies, the debug build
# (ASan + UBSan, -Werror), the unit tests, then the end-to-end tests against
# the real `eph serve`. Exits non-zero on the first failing stage.
#
#   scripts/test.sh                 everything
#   scripts/test.sh -k lifecycle    extra arguments go to pytest
#
# CI runs it through .ci/run on a fresh clone, as root, without stdin. The
# whole run is bounded: the e2e stage is interrupted (SIGINT, so fixtures
# still stop their servers) after EPH_E2E_TIMEOUT seconds.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

JOBS=$(nproc 2>/dev/null || echo 2)
E2E_TIMEOUT=${EPH_E2E_TIMEOUT:-1200}
FUZZ_SECONDS=${EPH_FUZZ_SECONDS:-10}
started=$SECONDS

stage() {
    printf '\n=== %s (%ds)\n' "$*" $((SECONDS - started))
}

stage "dependencies"
bash scripts/install-deps.sh

stage "test tools (npm: the OpenID provider of the sign-in tests)"
# npm ci installs exactly package-lock.json; skipped when node_modules was
# installed from this very lock file (a copy of it is kept there as a stamp).
peer=tests/e2e/peers/oidc
if ! cmp -s "$peer/package-lock.json" "$peer/node_modules/.eph-installed-lock.json"; then
    (cd "$peer" && npm ci --no-audit --no-fund --loglevel=error)
    cp "$peer/package-lock.json" "$peer/node_modules/.eph-installed-lock.json"
fi

stage "build (debug: ASan + UBSan)"
make -j"$JOBS"

stage "unit tests"
make -j"$JOBS" unit

stage "fuzz targets (build, then ${FUZZ_SECONDS}s each from the seeds)"
make -j"$JOBS" fuzz
for target in build/fuzz/fuzz_*; do
    [[ $target != *.d ]] || continue      # the compiler's dependency files
    seeds="fuzz/corpus/${target#build/fuzz/fuzz_}"
    scratch=$(mktemp -d)
    # New inputs go to the scratch directory (the first one named), so the
    # committed seeds stay as they are.
    "$target" -max_total_time="$FUZZ_SECONDS" -print_final_stats=0 "$scratch" "$seeds" \
        > "$scratch.log" 2>&1 || { tail -40 "$scratch.log"; exit 1; }
    rm -rf "$scratch" "$scratch.log"
    echo "$target: ok"
done

stage "end-to-end tests"
EPH_BIN="$PWD/build/debug/eph" timeout --signal=INT --kill-after=60 "$E2E_TIMEOUT" \
    /usr/bin/python3 -m pytest -q -rfE -p no:cacheprovider tests/e2e "$@"

stage "all tests passed"
