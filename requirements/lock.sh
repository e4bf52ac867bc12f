#!/usr/bin/env bash
# Refreshes the dependency locks on purpose (`make lock`); never run by an install.
# dev.lock is resolved first (runtime + dev + bench + build); run.lock is then constrained to it,
# so a package both need has one version in both.
set -euo pipefail
cd "$(dirname "$0")/.."
uv="${UV:-uv}"
common=(--universal --python-version 3.11 --generate-hashes --no-header --quiet)
"$uv" pip compile "${common[@]}" pyproject.toml requirements/build.in \
    --extra dev --extra bench -o requirements/dev.lock "$@"
"$uv" pip compile "${common[@]}" pyproject.toml requirements/build.in \
    -c requirements/dev.lock -o requirements/run.lock "$@"
