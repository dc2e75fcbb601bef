#!/usr/bin/env bash
# Fuzzes the reference server with schemathesis against schemas/v1/openapi.json, every check on.
# Not part of CI (it needs Python): run it by hand after a change of the OpenAPI document or of
# what the server accepts. Goal: 0 failures.
#
#   scripts/schemathesis.sh [extra schemathesis run options, e.g. --max-examples 50]
#
# It needs `schemathesis` on PATH, or SCHEMATHESIS naming the executable, e.g. from a venv:
#   python3.11 -m venv /tmp/st && /tmp/st/bin/pip install schemathesis
#   SCHEMATHESIS=/tmp/st/bin/schemathesis scripts/schemathesis.sh
# The server is `cargo run --release -- serve` on a free loopback port with a fresh data folder;
# its Token is an admin Token from `driftless token` for the one Space the run writes to.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
st="${SCHEMATHESIS:-schemathesis}"
command -v "$st" >/dev/null || { echo "schemathesis not found; set SCHEMATHESIS" >&2; exit 2; }

work="$(mktemp -d)"
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

cargo build --release --quiet
bin="$root/target/release/driftless"
"$bin" token --data "$work/data" --init --user probe --space probe >/dev/null
# A high per-User rate so that the fuzzer's own pace is never refused; 429 is still documented.
cargo run --release --quiet -- serve --listen 127.0.0.1:0 --data "$work/data" --rate-limit 100000 \
  >"$work/serve.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 100); do
  grep -q "listening on" "$work/serve.log" && break
  sleep 0.1
done
base="$(sed -n 's/^listening on //p' "$work/serve.log" | head -n1)"
[ -n "$base" ] || { echo "the server did not start:" >&2; cat "$work/serve.log" >&2; exit 1; }

space="fuzz"
token="$("$bin" token --data "$work/data" --user fuzzer --space "$space" --scope admin --ttl 3600)"

# Every operation works in the one Space the Token grants: the run uses a copy of the document
# whose `space` parameter allows only that Space, so that a generated other Space is a negative
# case (403). Everything else is the document as generated.
# The copy sits beside copies of the message schemas it refers to.
cp -r "$root/schemas/v1" "$work/schemas"
python3 - "$work/schemas/openapi.json" "$work/schemas/openapi.json" "$space" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
doc["components"]["parameters"]["space"]["schema"] = {"type": "string", "enum": [sys.argv[3]]}
json.dump(doc, open(sys.argv[2], "w"))
PY

# A Space with a Record, so that pulls from no Cursor answer at once instead of long-polling.
hlc="$(printf '%012x' "$(($(date +%s) * 1000))")-0000-seed-client"
curl -fsS -o /dev/null -X POST "$base/v1/spaces/$space/push" \
  -H "Authorization: Bearer $token" -H "Content-Type: application/json" \
  -d '{"client_id":"seed-client","mutations":[{"op_id":"seed-op-1","seq":1,"collection":"things","record_id":"seed","hlc":"'"$hlc"'","effect":{"kind":"put","value":{"n":1}}}]}'

# What a JSON Schema cannot say, as accepted answers to schema-valid requests:
# - pull: a Cursor the Server did not issue is invalid-cursor (400), an old one cursor-expired
#   (410) ([PULL-13], [PULL-14]); no pattern can tell which strings a Server issued.
# - registerCollectionSchema: the body's collection and version equal the path's (400,
#   [SCHEMA-1]); its `schema` is a valid draft 2020-12 schema and its Policies follow
#   [SCHEMA-6] and [EVO-12] (422). These relate members to the path and to earlier versions.
# And 413 (payload-too-large, batch-too-large) rejects invalid data as 400 does.
cat >"$work/schemathesis.toml" <<'EOF'
[checks.negative_data_rejection]
expected-statuses = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429"]

[[operations]]
include-operation-id = "pull"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404", "409", "410", "429"]

[[operations]]
include-operation-id = "registerCollectionSchema"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404", "409", "422", "429"]
EOF

cd "$work"
"$st" --config-file "$work/schemathesis.toml" run "$work/schemas/openapi.json" \
  --url "$base" \
  --header "Authorization: Bearer $token" \
  --checks all \
  --seed 1 \
  --max-examples 100 \
  --workers 1 \
  --generation-database none \
  --no-color \
  "$@"
