#!/usr/bin/env bash
# Sets up everything the test suite needs on a fresh machine of this project's kind, then runs
# it. Safe to run again: each step is skipped when already done. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# 1. Debian packages: mysqlclient builds against libmariadb; `age` is used by the encryption tests,
#    `xxhash` (xxh128sum) by the checksum tests, `chromium` by the service's browser tests
#    (Playwright drives Debian's build: no browser download).
missing=()
for pkg in libmariadb-dev pkg-config age xxhash chromium; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "installing Debian packages: ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# 2. Database servers: start them if they are down (the machine normally starts both).
if command -v pg_lsclusters >/dev/null && ! pg_lsclusters -h | grep -q online; then
  echo "starting PostgreSQL"
  as_root pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start
fi
if command -v mariadbd >/dev/null || [ -x /usr/sbin/mariadbd ]; then
  if ! mariadb-admin -uroot ping >/dev/null 2>&1; then
    echo "starting MariaDB"
    as_root install -d -o mysql -g root /run/mysqld
    as_root start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd -- --user=mysql
    for _ in $(seq 60); do mariadb-admin -uroot ping >/dev/null 2>&1 && break; sleep 0.5; done
  fi
  # root over TCP with an empty password (the tests connect to 127.0.0.1); a no-op when it
  # already works. Without it, root works over the socket only (ERROR 1698 over TCP).
  if ! mariadb -h127.0.0.1 -uroot -e "select 1" >/dev/null 2>&1; then
    as_root mariadb -uroot -e "ALTER USER root@localhost IDENTIFIED VIA unix_socket OR mysql_native_password USING PASSWORD('')" || true
  fi
fi

# 3. Python environment.
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e '.[test,mysqlclient]'

# 4. Lint and types first: they take seconds and fail for reasons a test run would bury.
#    Settings are in pyproject.toml ([tool.ruff], [tool.mypy]).
.venv/bin/ruff check src tests bench scripts
.venv/bin/mypy

# 5. The tests. Every server and tool is required: a missing one fails the run instead of
# skipping its tests (tests/conftest.py).
export SQLSNAP_REQUIRE_SERVERS="${SQLSNAP_REQUIRE_SERVERS:-1}"
exec .venv/bin/python -m pytest "$@"
