#!/usr/bin/env bash
# Apache Kafka for the test suite, from its Maven Central artifacts (scripts/kafka/pom.xml):
# KRaft nodes (broker + controller in one JVM) on loopback.
#
#   scripts/kafka.sh classpath                   # resolves Kafka once; prints the classpath file
#   scripts/kafka.sh certs DIR                   # a test CA, the broker's PEM keystore, a wrong CA
#   scripts/kafka.sh node DIR ID VOTERS PLAINTEXT CONTROLLER [SASL SSL]
#                                                # writes DIR/server.properties, formats DIR/data
#   scripts/kafka.sh run DIR                     # runs that node in the foreground (exec java)
#
# VOTERS is KRaft's `controller.quorum.voters` (`1@127.0.0.1:9093,…`). A node given SASL and SSL
# ports also listens with SASL_PLAINTEXT (SCRAM-SHA-512, user `$KAFKA_TEST_USER` with
# `$KAFKA_TEST_PASSWORD`, created at format time) and SSL (certificates from `certs DIR/..`).
# `KAFKA_HEAP_OPTS` sets the JVM heap (default `-Xms256m -Xmx1g`).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cache="${KAFKA_EVENTS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kafka-events}"
: "${KAFKA_TEST_USER:=kafka-events-test}"
: "${KAFKA_TEST_PASSWORD:=test-password-do-not-use}"

classpath_file() {
  local sum file
  sum=$(cat "$here/kafka/pom.xml" | sha256sum | cut -c1-16)
  file="$cache/kafka-classpath-$sum.txt"
  if [ ! -s "$file" ]; then
    mkdir -p "$cache"
    echo "== resolving Apache Kafka from Maven Central (once; cached in ~/.m2)" >&2
    mvn -q -B -f "$here/kafka/pom.xml" dependency:build-classpath -Dmdep.outputFile="$file.tmp" >&2
    mv "$file.tmp" "$file"
  fi
  echo "$file"
}

java_run() {
  local cp
  cp=$(cat "$(classpath_file)")
  # shellcheck disable=SC2086
  exec java ${KAFKA_HEAP_OPTS:--Xms256m -Xmx1g} -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$here/kafka/log4j2.properties" -cp "$cp" "$@"
}

certs() {
  local dir=$1
  mkdir -p "$dir"
  [ -s "$dir/server.pem" ] && return
  (
    cd "$dir"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 30 \
      -subj "/CN=kafka-events test CA" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj "/CN=localhost" 2>/dev/null
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >san.ext
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.crt -days 30 \
      -extfile san.ext 2>/dev/null
    # Kafka's PEM keystore: the PKCS#8 private key followed by the certificate.
    openssl pkcs8 -topk8 -nocrypt -in server.key -out server.pk8
    cat server.pk8 server.crt >server.pem
    # A CA that did not sign the broker's certificate.
    openssl req -x509 -newkey rsa:2048 -nodes -keyout wrong-ca.key -out wrong-ca.pem -days 30 \
      -subj "/CN=some other CA" 2>/dev/null
  )
}

node() {
  local dir=$1 id=$2 voters=$3 plaintext=$4 controller=$5 sasl=${6:-} ssl=${7:-}
  mkdir -p "$dir"
  local listeners="PLAINTEXT://127.0.0.1:$plaintext,CONTROLLER://127.0.0.1:$controller"
  local advertised="PLAINTEXT://127.0.0.1:$plaintext"
  local replication
  replication=$(awk -F, '{print NF}' <<<"$voters")
  local min_isr=$(( replication > 1 ? 2 : 1 ))
  {
    echo "process.roles=broker,controller"
    echo "node.id=$id"
    echo "controller.quorum.voters=$voters"
    echo "controller.listener.names=CONTROLLER"
    echo "inter.broker.listener.name=PLAINTEXT"
    echo "log.dirs=$dir/data"
    echo "num.partitions=1"
    echo "default.replication.factor=$replication"
    echo "min.insync.replicas=$min_isr"
    echo "offsets.topic.replication.factor=$replication"
    echo "offsets.topic.num.partitions=10"
    echo "transaction.state.log.replication.factor=$replication"
    echo "transaction.state.log.min.isr=$min_isr"
    echo "transaction.state.log.num.partitions=10"
    echo "share.coordinator.state.topic.replication.factor=$replication"
    echo "share.coordinator.state.topic.min.isr=$min_isr"
    # As in production: topics exist because someone created them, never by producing.
    echo "auto.create.topics.enable=false"
    # Tests start groups all the time: no join delay; short heartbeats for the consumer
    # group protocol (KIP-848) so that rebalances in tests take seconds, not tens of seconds.
    echo "group.initial.rebalance.delay.ms=0"
    echo "group.consumer.min.heartbeat.interval.ms=500"
    echo "group.consumer.heartbeat.interval.ms=1000"
    echo "group.consumer.min.session.timeout.ms=6000"
    echo "group.consumer.session.timeout.ms=10000"
    echo "log.segment.bytes=67108864"
    echo "log.retention.check.interval.ms=60000"
    if [ -n "$sasl" ]; then
      listeners="$listeners,SASL://127.0.0.1:$sasl,SSL://127.0.0.1:$ssl"
      advertised="$advertised,SASL://127.0.0.1:$sasl,SSL://127.0.0.1:$ssl"
      echo "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL:SASL_PLAINTEXT,SSL:SSL"
      echo "sasl.enabled.mechanisms=SCRAM-SHA-512"
      echo "listener.name.sasl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;"
      echo "listener.name.ssl.ssl.keystore.type=PEM"
      echo "listener.name.ssl.ssl.keystore.location=$(cd "$dir/.." && pwd)/certs/server.pem"
    else
      echo "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
    fi
    echo "listeners=$listeners"
    echo "advertised.listeners=$advertised"
  } >"$dir/server.properties"
  if [ ! -f "$dir/data/meta.properties" ]; then
    local cluster_id=${KAFKA_CLUSTER_ID:-$(head -c16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')}
    local scram=()
    [ -n "$sasl" ] && scram=(--add-scram "SCRAM-SHA-512=[name=$KAFKA_TEST_USER,password=$KAFKA_TEST_PASSWORD]")
    (java_run kafka.tools.StorageTool format --cluster-id="$cluster_id" --config "$dir/server.properties" \
      "${scram[@]}" >"$dir/format.log" 2>&1) || { cat "$dir/format.log" >&2; return 1; }
  fi
}

case "${1:-}" in
  classpath) classpath_file ;;
  certs) certs "$2" ;;
  node) shift; node "$@" ;;
  run) java_run kafka.Kafka "$2/server.properties" ;;
  *) sed -n '2,16p' "$0" >&2; exit 2 ;;
esac
