#!/usr/bin/env bash
# The whole test suite against a real Kafka-protocol broker.
#
#   scripts/test.sh                          # installs (once) and starts Tansu on loopback
#   KAFKA_BROKERS=host:9092 scripts/test.sh  # against your own Kafka cluster instead
#
# PostgreSQL (for the idempotency tests): KAFKA_EVENTS_TEST_DATABASE_URL if set; otherwise the
# server on 127.0.0.1:5432, started (or installed from Debian's packages) when it is not running.
#
# Extra arguments go to `cargo test` (e.g. `scripts/test.sh --test core`).
set -euo pipefail
cd "$(dirname "$0")/.."

TANSU_VERSION="${TANSU_VERSION:-0.6.0}"
log_dir="${TMPDIR:-/tmp}/kafka-events-test"
mkdir -p "$log_dir"

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

ensure_tansu() {
  if command -v tansu >/dev/null 2>&1 && tansu --version 2>/dev/null | grep -q "$TANSU_VERSION"; then
    return
  fi
  echo "== installing tansu $TANSU_VERSION (once; about 12 minutes on 2 cores)"
  cargo install tansu --locked --version "$TANSU_VERSION" --features dynostore,postgres
}

ensure_postgres() {
  if [ -n "${KAFKA_EVENTS_TEST_DATABASE_URL:-}" ]; then
    echo "== using PostgreSQL at KAFKA_EVENTS_TEST_DATABASE_URL"
    return
  fi
  if ! port_in_use 5432; then
    if [ -z "$(ls /etc/postgresql 2>/dev/null)" ]; then
      echo "== installing PostgreSQL (Debian packages)"
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    fi
    local version
    version=$(ls /etc/postgresql | sort -V | tail -1)
    echo "== starting PostgreSQL $version"
    pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    for _ in $(seq 1 100); do port_in_use 5432 && break; sleep 0.1; done
    port_in_use 5432 || { echo "PostgreSQL did not listen on 127.0.0.1:5432" >&2; exit 1; }
  fi
  local url="postgres://postgres@127.0.0.1:5432/postgres"
  if ! psql "$url" -Atc 'SELECT 1' >/dev/null 2>&1; then
    # A fresh Debian cluster asks TCP clients for a password: give `postgres` one.
    runuser -u postgres -- psql -q -c "ALTER USER postgres PASSWORD 'postgres'"
    url="postgres://postgres:postgres@127.0.0.1:5432/postgres"
    psql "$url" -Atc 'SELECT 1' >/dev/null || { echo "cannot connect to PostgreSQL at $url" >&2; exit 1; }
  fi
  export KAFKA_EVENTS_TEST_DATABASE_URL="$url"
  echo "== PostgreSQL at 127.0.0.1:5432"
}

ensure_postgres

if [ -z "${KAFKA_BROKERS:-}" ]; then
  ensure_tansu
  port=19092
  while port_in_use "$port"; do port=$((port + 1)); done
  echo "== starting tansu on 127.0.0.1:$port (log: $log_dir/tansu.log)"
  tansu broker \
    --listener-url "tcp://127.0.0.1:$port" \
    --advertised-listener-url "tcp://127.0.0.1:$port" \
    --storage-engine memory://tansu/ >"$log_dir/tansu.log" 2>&1 &
  tansu_pid=$!
  trap 'kill "$tansu_pid" 2>/dev/null || true; wait "$tansu_pid" 2>/dev/null || true' EXIT
  for _ in $(seq 1 100); do
    port_in_use "$port" && break
    kill -0 "$tansu_pid" 2>/dev/null || { cat "$log_dir/tansu.log"; echo "tansu failed to start" >&2; exit 1; }
    sleep 0.1
  done
  port_in_use "$port" || { cat "$log_dir/tansu.log"; echo "tansu did not listen on $port" >&2; exit 1; }
  export KAFKA_BROKERS="127.0.0.1:$port"
  # Tansu 0.6 does not route EndTxn: tests/transactions.rs checks that, and proves transactions
  # on librdkafka's mock cluster instead.
  export KAFKA_EVENTS_BROKER_LACKS_TRANSACTIONS=1
else
  echo "== using the cluster at KAFKA_BROKERS=$KAFKA_BROKERS"
fi

start=$(date +%s)
echo "== cargo test --workspace (broker: $KAFKA_BROKERS)"
status=0
cargo test --workspace --no-fail-fast "$@" 2>&1 | tee "$log_dir/cargo-test.log" || status=$?

if [ "$#" -eq 0 ] && [ "$status" -eq 0 ]; then
  echo "== quickstart on the embedded broker"
  env -u KAFKA_BROKERS cargo run --quiet --example quickstart || status=$?
  echo "== sensor_metrics example on the embedded broker and PostgreSQL"
  env -u KAFKA_BROKERS DATABASE_URL="$KAFKA_EVENTS_TEST_DATABASE_URL" RUST_LOG=error \
    cargo run --quiet --example sensor_metrics || status=$?
fi

# One closing line over every test binary: cargo prints one `test result:` line per binary.
totals=$(awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
              END { printf "%d passed, %d failed", p, f }' "$log_dir/cargo-test.log")
echo "== suite finished in $(( $(date +%s) - start )) s"
echo "suite: $totals"
exit "$status"
