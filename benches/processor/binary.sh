#!/usr/bin/env bash
# Builds the processor benchmark (release) and prints the path of its binary, for the scripts
# that run its scenarios one process at a time (instructions.sh, ../peers/run.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo bench --bench processor --no-run >/dev/null 2>&1
cargo bench --bench processor --no-run --message-format=json 2>/dev/null \
  | python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "processor" and m.get("executable"):
        print(m["executable"])' | tail -1
