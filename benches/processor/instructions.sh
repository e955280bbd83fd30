#!/usr/bin/env bash
# Instructions per message of B0, B0+decode, B1, B1 with headers, B3 and B6, counted by callgrind:
# figures that do not move with the machine's load (msgs/s on a shared 2-core machine moves by
# ±30 %). A scenario name ending in `h` (B1h, B3h) gives every message the three headers the
# runtime's publisher writes (`BENCH_HEADERS=1`).
#
#   KAFKA_BROKERS=127.0.0.1:19092 benches/processor/instructions.sh [N1 N2]   # SCENARIOS="B1" for one
#
# Each scenario consumes N1 and then N2 messages (default 20,000 and 60,000), each run in a
# fresh process under `valgrind --tool=callgrind` against a topic produced beforehand by another
# (unmeasured) process; instructions per message = (I(N2) − I(N1)) / (N2 − N1), which cancels
# start-up, connection and shutdown. Every thread of the process counts (librdkafka's included).
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${KAFKA_BROKERS:?point KAFKA_BROKERS at a broker (scripts/test.sh starts one; see README Benchmark)}"
n1=${1:-20000}
n2=${2:-60000}
bin=$(benches/processor/binary.sh)
out=$(mktemp -d)
count() { # scenario messages -> instructions
  local run="instr$(printf '%s' "$RANDOM$RANDOM" | tr '0-9' 'a-j')" solo=$1 headers=0
  case $solo in *h) solo=${solo%h} headers=1 ;; esac
  BENCH_HEADERS=$headers BENCH_RUN=$run BENCH_SOLO=produce BENCH_FOR=$solo BENCH_MESSAGES=$2 "$bin" >/dev/null
  BENCH_HEADERS=$headers BENCH_RUN=$run BENCH_SOLO=$solo BENCH_MESSAGES=$2 valgrind --tool=callgrind --callgrind-out-file="$out/$1-$2.out" \
    "$bin" >"$out/$1-$2.log" 2>"$out/$1-$2.err"
  sed -n 's/^summary: //p' "$out/$1-$2.out"
}
printf '| scenario | instructions (%d msgs) | instructions (%d msgs) | instructions per message |\n|---|---|---|---|\n' "$n1" "$n2"
for scenario in ${SCENARIOS:-B0 B0D B1 B1h B3 B6}; do
  a=$(count "$scenario" "$n1")
  b=$(count "$scenario" "$n2")
  printf '| %s | %s | %s | %s |\n' "$scenario" "$a" "$b" "$(( (b - a) / (n2 - n1) ))"
done
rm -rf "$out"
