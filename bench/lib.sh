# bench/lib.sh - the shell half of what the benchmark scripts share (the
# Python half is bench/benchlib.py). Each script sources it first:
#
#   source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#
# It turns on strict mode and moves to the repository root, where the
# scripts' Python finds bench/benchlib.py.

set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Exports EPH_BIN: the binary it names already, else a release build made now.
bench_use_eph() {
    if [[ -z ${EPH_BIN:-} ]]; then
        make -j"$(nproc 2>/dev/null || echo 2)" release >&2
        EPH_BIN=$PWD/build/release/eph
    fi
    export EPH_BIN
}
