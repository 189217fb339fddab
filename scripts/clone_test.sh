#!/usr/bin/env bash
# Clone the current commit into a fresh, empty temporary directory (nothing next to it, nothing
# carried over: no virtual environment, caches or generated files) and run `make test` there.
# Proves that a bare clone installs and passes on its own. Uncommitted changes are not included.
#   scripts/clone_test.sh            # then `make test` in the clone; exit status is make's
#   KEEP=1 scripts/clone_test.sh     # keep the clone afterwards (its path is printed)
set -euo pipefail

repo="$(git -C "$(dirname "$0")/.." rev-parse --show-toplevel)"
commit="$(git -C "$repo" rev-parse HEAD)"
if [ -n "$(git -C "$repo" status --porcelain --untracked-files=no)" ]; then
    echo "note: uncommitted changes are not tested; testing commit $commit" >&2
fi

parent="$(mktemp -d "${TMPDIR:-/tmp}/ftc-clone-test.XXXXXX")"
if [ -z "${KEEP:-}" ]; then
    trap 'rm -rf "$parent"' EXIT
fi
clone="$parent/ftc"
git clone --quiet --no-local --no-checkout "$repo" "$clone"
git -C "$clone" fetch --quiet "$repo" HEAD  # HEAD even when it is on no branch
git -C "$clone" checkout --quiet --detach "$commit"
echo "testing $commit in $clone"
cd "$clone"
make test
