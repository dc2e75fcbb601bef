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

# Every operation works in the one Space the Token grants; the rest of each request is generated.
cat >"$work/schemathesis.toml" <<EOF
[parameters]
"path.space" = "$space"
EOF

"$st" --config-file "$work/schemathesis.toml" run "$root/schemas/v1/openapi.json" \
  --url "$base" \
  --header "Authorization: Bearer $token" \
  --checks all \
  --seed 1 \
  --max-examples 30 \
  --workers 1 \
  --no-color \
  "$@"
