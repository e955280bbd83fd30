#!/usr/bin/env bash
# The whole test suite against Apache Kafka.
#
#   scripts/test.sh                          # resolves (once) and starts Apache Kafka on loopback
#   KAFKA_BROKERS=host:9092 scripts/test.sh  # against your own Kafka cluster instead
#
# Kafka comes from Maven Central (scripts/kafka/pom.xml, cached in ~/.m2; Java 17, Maven and
# openssl are installed from Debian's packages where missing): one KRaft node with a plaintext,
# a SASL_PLAINTEXT (SCRAM-SHA-512) and a TLS listener (scripts/kafka.sh).
#
# PostgreSQL (for the idempotency tests): KAFKA_EVENTS_TEST_DATABASE_URL if set; otherwise the
# server on 127.0.0.1:5432, started (or installed from Debian's packages) when it is not running.
#
# Extra arguments go to `cargo test` (e.g. `scripts/test.sh --test core`).
set -euo pipefail
cd "$(dirname "$0")/.."

log_dir="${TMPDIR:-/tmp}/kafka-events-test"
mkdir -p "$log_dir"

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# A free loopback port at or above $1 that no earlier call returned.
taken=" "
free_port() {
  local port=$1
  while port_in_use "$port" || [[ "$taken" == *" $port "* ]]; do port=$((port + 1)); done
  taken="$taken$port "
  echo "$port"
}

# Java 17, Maven and openssl (Kafka), promtool (the alert rules' tests) and Node.js (the
# AsyncAPI parser), from Debian's packages where missing.
ensure_tools() {
  local missing=()
  command -v java >/dev/null 2>&1 || missing+=(openjdk-17-jre-headless)
  command -v mvn >/dev/null 2>&1 || missing+=(maven)
  command -v openssl >/dev/null 2>&1 || missing+=(openssl)
  command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
  command -v node >/dev/null 2>&1 || missing+=(nodejs)
  command -v npm >/dev/null 2>&1 || missing+=(npm)
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "== installing ${missing[*]} (Debian packages)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

# The AsyncAPI parser (npm, pinned by scripts/asyncapi/package-lock.json) that tests/deploy.rs
# validates the generated documents with.
ensure_asyncapi_parser() {
  local dir=scripts/asyncapi
  if [ ! -d "$dir/node_modules/@asyncapi/parser" ] || [ "$dir/package-lock.json" -nt "$dir/node_modules" ]; then
    echo "== installing the AsyncAPI parser (npm ci in $dir)"
    (cd "$dir" && npm ci --silent --no-audit --no-fund)
  fi
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

# One KRaft node (broker + controller) of Apache Kafka on loopback, listening in plaintext, with
# SASL_PLAINTEXT (SCRAM-SHA-512) and with TLS; stopped when this script exits.
start_kafka() {
  ensure_tools
  scripts/kafka.sh classpath >/dev/null
  local dir="$log_dir/kafka"
  rm -rf "$dir"
  scripts/kafka.sh certs "$dir/certs"
  local plaintext controller sasl ssl
  plaintext=$(free_port 19092); controller=$(free_port 19093); sasl=$(free_port 19094); ssl=$(free_port 19095)
  scripts/kafka.sh node "$dir/node" 1 "1@127.0.0.1:$controller" "$plaintext" "$controller" "$sasl" "$ssl"
  echo "== starting Apache Kafka $(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' scripts/kafka/pom.xml) on 127.0.0.1:$plaintext (log: $dir/kafka.log)"
  scripts/kafka.sh run "$dir/node" >"$dir/kafka.log" 2>&1 &
  kafka_pid=$!
  # Stop the broker and drop its data (the log stays for reading) when this script exits.
  trap 'kill "$kafka_pid" 2>/dev/null || true; wait "$kafka_pid" 2>/dev/null || true; rm -rf "$log_dir/kafka/node/data"' EXIT
  local waited=0
  until grep -q "Kafka Server started" "$dir/kafka.log"; do
    kill -0 "$kafka_pid" 2>/dev/null || { cat "$dir/kafka.log"; echo "Kafka failed to start" >&2; exit 1; }
    [ "$waited" -lt 1200 ] || { cat "$dir/kafka.log"; echo "Kafka did not start within 120 s" >&2; exit 1; }
    sleep 0.1; waited=$((waited + 1))
  done
  export KAFKA_BROKERS="127.0.0.1:$plaintext"
  export KAFKA_EVENTS_TEST_SASL_BROKERS="127.0.0.1:$sasl"
  export KAFKA_EVENTS_TEST_SASL_USER="${KAFKA_TEST_USER:-kafka-events-test}"
  export KAFKA_EVENTS_TEST_SASL_PASSWORD="${KAFKA_TEST_PASSWORD:-test-password-do-not-use}"
  export KAFKA_EVENTS_TEST_SSL_BROKERS="127.0.0.1:$ssl"
  export KAFKA_EVENTS_TEST_SSL_CA="$dir/certs/ca.pem"
  export KAFKA_EVENTS_TEST_WRONG_CA="$dir/certs/wrong-ca.pem"
}

ensure_postgres
if [ -z "${KAFKA_BROKERS:-}" ]; then
  start_kafka
else
  echo "== using the cluster at KAFKA_BROKERS=$KAFKA_BROKERS"
  ensure_tools
  scripts/kafka.sh classpath >/dev/null
fi
ensure_asyncapi_parser
# The Java client (kafka-clients, on Kafka's classpath) for the interoperability tests, and the
# script the broker-failure test starts its own three-node cluster with.
export KAFKA_EVENTS_TEST_JAVA_CLASSPATH="$(scripts/kafka.sh classpath)"

# Incremental compilation state would add gigabytes under target/ for the suite's many test
# binaries and buys nothing on a run that builds each once; set CARGO_INCREMENTAL=1 to keep it.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

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
echo "== suite finished in $(( $(date +%s) - start )) s; $(du -sh "${CARGO_TARGET_DIR:-target}" 2>/dev/null | cut -f1) under target/, $(df -h --output=avail . | tail -1 | tr -d ' ') free"
echo "suite: $totals"
exit "$status"
