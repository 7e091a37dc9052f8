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
started=$SECONDS

stage() {
    printf '\n=== %s (%ds)\n' "$*" $((SECONDS - started))
}

stage "dependencies"
bash scripts/install-deps.sh

stage "build (debug: ASan + UBSan)"
make -j"$JOBS"

stage "unit tests"
make -j"$JOBS" unit

stage "end-to-end tests"
EPH_BIN="$PWD/build/debug/eph" timeout --signal=INT --kill-after=60 "$E2E_TIMEOUT" \
    /usr/bin/python3 -m pytest -q -rfE -p no:cacheprovider tests/e2e "$@"

stage "all tests passed"
