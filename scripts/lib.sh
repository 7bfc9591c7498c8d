# shellcheck shell=bash
# Sourced by the other scripts: where things are, and how to fail.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readonly ROOT

# The chapters in reading order. Each later one starts as a copy of the one
# before; a chapter that does not exist yet is skipped.
readonly ALL_CHAPTERS=(a-epoll b-edge-triggered c-oneshot d-ready-list)

# Support code: not the lesson, so byte for byte the same in every chapter,
# which keeps it out of the diffs between chapters.
readonly SUPPORT_FILES=(src/delay_server.rs src/http.rs tests/support/mod.rs)

# The mdBook release the book is built and checked with.
readonly MDBOOK_VERSION=0.5.4

die() {
    echo "$(basename "$0"): $*" >&2
    exit 1
}

# Prints the chapters that exist, one per line, in reading order.
chapters() {
    local chapter
    for chapter in "${ALL_CHAPTERS[@]}"; do
        if [[ -f $ROOT/$chapter/Cargo.toml ]]; then
            echo "$chapter"
        fi
    done
}
