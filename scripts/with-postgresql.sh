#!/usr/bin/env bash
# Run a command against a throw-away PostgreSQL cluster on a private port, then remove it.
# initdb refuses to run as root: as root (CI) the cluster runs as the `postgres` user.
set -euo pipefail
PGBIN=${PGBIN:-$(dirname "$(command -v initdb || echo /usr/lib/postgresql/15/bin/initdb)")}
dir=$(mktemp -d /tmp/pli-pg.XXXXXX)
port=${PLI_TEST_PG_PORT:-$(( 20000 + RANDOM % 20000 ))}
as_pg=()
if [ "$(id -u)" -eq 0 ]; then
  chown postgres: "$dir"
  as_pg=(runuser -u postgres --)
fi
cleanup() {
  "${as_pg[@]}" "$PGBIN/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$dir"
}
trap cleanup EXIT
"${as_pg[@]}" "$PGBIN/initdb" -D "$dir/data" -A trust -U postgres -E UTF8 --locale=C.UTF-8 >/dev/null
"${as_pg[@]}" "$PGBIN/pg_ctl" -D "$dir/data" -l "$dir/log" -w \
  -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=${PLI_TEST_PG_FSYNC:-off} -c max_connections=200" start >/dev/null
export PLI_DATABASE_URL="postgresql://postgres@127.0.0.1:$port/pli"
echo "PostgreSQL ready on 127.0.0.1:$port" >&2
"$@"
