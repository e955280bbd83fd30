#!/usr/bin/env bash
# Peers on the same topic in the same run: the raw rust-rdkafka loop with serde decode (B0D),
# kafka-events' no-op typed handler without a log subscriber and with the default one at `info`,
# Kafka's Java client (KafkaConsumer + Jackson, commitAsync) and KafkaJS (eachMessage +
# JSON.parse). Each consumer is its own process in its own group reading the whole topic;
# consumers alternate, ROUNDS rounds (default 2).
#
#   KAFKA_BROKERS=127.0.0.1:19092 benches/peers/run.sh [MESSAGES]     # default 1,000,000
#
# msgs/s is timed by each consumer from its first message to its last; CPU is user + sys of the
# whole process (start-up and connection included, as `/usr/bin/time` counts them); RSS its peak.
# Needs Java 17 (the Kafka classpath `scripts/kafka.sh classpath` resolves) and Node (KafkaJS is
# installed from benches/peers/package-lock.json on first use).
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${KAFKA_BROKERS:?point KAFKA_BROKERS at a broker (scripts/test.sh starts one; see README Benchmark)}"
messages=${1:-1000000}
rounds=${ROUNDS:-2}
[ -d benches/peers/node_modules/kafkajs ] || npm ci --prefix benches/peers --no-audit --no-fund >/dev/null
classpath=$(cat "$(scripts/kafka.sh classpath)")
bin=$(benches/processor/binary.sh)
run="peers$(printf '%s' "$RANDOM$RANDOM" | tr '0-9' 'a-j')"
topic="$run.b1"
out=$(mktemp -d)
trap 'BENCH_RUN=$run BENCH_SOLO=delete "$bin" >/dev/null 2>&1 || true; rm -rf "$out"' EXIT
BENCH_RUN=$run BENCH_SOLO=produce BENCH_FOR=B1 BENCH_MESSAGES=$messages "$bin" >/dev/null
echo "produced $messages readings (~50-byte JSON, 1,000 keys) to $topic (3 partitions) on $KAFKA_BROKERS"

# consumer name, then its command; prints `name msgs/s cpu-µs/msg rss-MB`.
measure() {
  local name=$1 log="$out/$1.log"
  shift
  /usr/bin/time -f 'time %U %S %M' "$@" >"$log" 2>&1 || { echo "$name failed:" >&2; cat "$log" >&2; exit 1; }
  python3 - "$name" "$messages" "$log" <<'EOF'
import re, sys
name, expected, text = sys.argv[1], int(sys.argv[2]), open(sys.argv[3]).read()
m = re.search(r"consumed (\d+) messages in ([\d.]+) s", text)
t = re.findall(r"time ([\d.]+) ([\d.]+) (\d+)", text)[-1]
count, secs = int(m.group(1)), float(m.group(2))
assert count >= expected, f"{name} consumed {count} of {expected}"
cpu = float(t[0]) + float(t[1])
print(f"{name} {count / secs:.0f} {cpu * 1e6 / count:.2f} {int(t[2]) / 1024:.0f}")
EOF
}

for round in $(seq "$rounds"); do
  g="$run-r$round"
  measure raw-rust-rdkafka-loop-serde env BENCH_GROUP=r${round} BENCH_RUN=$run BENCH_KEEP=1 BENCH_SOLO=B0D BENCH_MESSAGES=$messages "$bin"
  measure kafka-events-no-subscriber env BENCH_GROUP=r${round}a BENCH_RUN=$run BENCH_KEEP=1 BENCH_SOLO=B1 BENCH_MESSAGES=$messages "$bin"
  measure kafka-events-info-logging env RUST_LOG=info BENCH_GROUP=r${round}b BENCH_RUN=$run BENCH_KEEP=1 BENCH_SOLO=B1 BENCH_MESSAGES=$messages "$bin"
  measure java-kafka-clients-jackson java -cp "$classpath" benches/peers/JavaConsumer.java "$KAFKA_BROKERS" "$topic" "$messages" "$g-java"
  measure kafkajs-eachmessage node benches/peers/kafkajs.mjs "$KAFKA_BROKERS" "$topic" "$messages" "$g-kafkajs"
done | tee "$out/rows" >/dev/null

python3 - "$out/rows" "$rounds" <<'EOF'
import sys, collections
rows = collections.defaultdict(list)
for line in open(sys.argv[1]):
    name, rate, cpu, rss = line.split()
    rows[name].append((float(rate), float(cpu), float(rss)))
java = rows["java-kafka-clients-jackson"]
print(f"\n| consumer | msgs/s (each round) | CPU µs per message | peak RSS MB | msgs/s ÷ Java's | CPU ÷ Java's |")
print("|---|---|---|---|---|---|")
for name, runs in rows.items():
    rates = " / ".join(f"{r[0] / 1e6:.2f} M" for r in runs)
    cpus = " / ".join(f"{r[1]:.2f}" for r in runs)
    rss = " / ".join(f"{r[2]:.0f}" for r in runs)
    ratio = " / ".join(f"{r[0] / j[0]:.2f}" for r, j in zip(runs, java))
    cpu_ratio = " / ".join(f"{r[1] / j[1]:.2f}" for r, j in zip(runs, java))
    print(f"| {name} | {rates} | {cpus} | {rss} | {ratio} | {cpu_ratio} |")
EOF
