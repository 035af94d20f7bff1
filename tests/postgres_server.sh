# Sourced by `make test`: a throwaway PostgreSQL cluster for the tests, on a free local port.
# Needs the server binaries (`make postgres-bin`), runs the server as an unprivileged user
# (initdb refuses root), exports NIGHTREC_TEST_POSTGRES_URL and stops the cluster when the
# sourcing shell exits. The password is random and never echoed.

_pg_bin() {
    local name=$1 dir
    if command -v "$name" >/dev/null 2>&1; then command -v "$name"; return; fi
    for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        if [ -x "$dir/$name" ]; then echo "$dir/$name"; return; fi
    done
    return 1
}

if ! _pg_bin initdb >/dev/null || ! _pg_bin pg_ctl >/dev/null; then
    echo "postgres_server.sh: PostgreSQL is not installed; run make postgres-bin" >&2
    return 1 2>/dev/null || exit 1
fi

_PG_INITDB=$(_pg_bin initdb)
_PG_CTL=$(_pg_bin pg_ctl)
_PG_DIR=$(mktemp -d /tmp/nightrec-pg.XXXXXX)
_PG_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
_PG_PASSWORD=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
_PG_USER=nightrec
_PG_DB=nightrec_test

if [ "$(id -u)" = "0" ]; then
    id postgres >/dev/null 2>&1 || useradd --system --home-dir "$_PG_DIR" --shell /bin/sh postgres
    _pg_as() { runuser -u postgres -- "$@"; }
else
    _pg_as() { "$@"; }
fi

_pg_umask=$(umask); umask 077
printf '%s\n' "$_PG_PASSWORD" >"$_PG_DIR/pwfile"
umask "$_pg_umask"
mkdir -p "$_PG_DIR/socket"
[ "$(id -u)" = "0" ] && chown -R postgres "$_PG_DIR"

_pg_as "$_PG_INITDB" -D "$_PG_DIR/data" -U "$_PG_USER" --pwfile="$_PG_DIR/pwfile" \
    --auth=scram-sha-256 --encoding=UTF8 --no-sync >"$_PG_DIR/initdb.log" 2>&1 \
    || { cat "$_PG_DIR/initdb.log" >&2; return 1 2>/dev/null || exit 1; }
rm -f "$_PG_DIR/pwfile"
_pg_as "$_PG_CTL" -D "$_PG_DIR/data" -l "$_PG_DIR/server.log" -w -t 60 \
    -o "-p $_PG_PORT -k $_PG_DIR/socket -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null \
    || { cat "$_PG_DIR/server.log" >&2; return 1 2>/dev/null || exit 1; }

_nightrec_pg_stop() {
    _pg_as "$_PG_CTL" -D "$_PG_DIR/data" -m fast stop >/dev/null 2>&1 || true
    rm -rf "$_PG_DIR"
}
trap _nightrec_pg_stop EXIT

PGPASSWORD=$_PG_PASSWORD psql -q -h 127.0.0.1 -p "$_PG_PORT" -U "$_PG_USER" -d postgres \
    -c "CREATE DATABASE $_PG_DB" >/dev/null
export NIGHTREC_TEST_POSTGRES_URL="postgresql://$_PG_USER:$_PG_PASSWORD@127.0.0.1:$_PG_PORT/$_PG_DB"
echo "postgres_server.sh: PostgreSQL test cluster on 127.0.0.1:$_PG_PORT (NIGHTREC_TEST_POSTGRES_URL exported)" >&2
