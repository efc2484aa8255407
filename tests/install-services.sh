#!/usr/bin/env bash
# What the tests need beyond Python packages: PostgreSQL's server programs
# (tests/postgres.py starts a throwaway cluster). Installed from Debian's
# packages only when missing, so a machine that has them is left alone.
set -euo pipefail
if ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null && ! command -v initdb >/dev/null; then
    if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
        # The tests that need it skip here, and fail in CI (tests/conftest.py).
        echo "tests/install-services.sh: PostgreSQL's server is missing (Debian: postgresql)" >&2
        exit 0
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q && apt-get install -y -q --no-install-recommends postgresql
fi
