#!/usr/bin/env bash
# Peer benchmark: the same documents through Driftless and pouchdb-server (CouchDB protocol) with
# one client program (bench/peers/peer_client.py), printing documents per second, the ratio
# Driftless/PouchDB and the goals of issue 15 with PASS/FAIL. A benchmark, not a test: not part of
# CI. It needs cargo, node with npm (the npm registry) and python3.
#
#   bench/peers/pouchdb.sh [--docs N] [--pushers N] [--batches 1,100,1000] [--page N] [--pull-rounds N]
#
# (peer_client.py's other options are set here; `python3 bench/peers/peer_client.py --help`.)
#
# Environment:
#   DRIFTLESS               the driftless binary to run (default: `cargo build --release`, then
#                           target/release/driftless)
#   POUCHDB_SERVER_VERSION  the pouchdb-server version to install (default 4.2.0, the latest)
#   POUCHDB_SERVER_PREFIX   an npm prefix that already holds pouchdb-server (from `npm install
#                           --prefix DIR pouchdb-server@VERSION`), to skip the install on reruns;
#                           by default it is installed into the run's temporary folder
#
# Both servers listen on free 127.0.0.1 ports with their data in a temporary folder, which is
# removed with the servers stopped when the script exits, also on failure or Ctrl-C. Driftless
# runs with a high --rate-limit so that 50 pushers of one User are never answered 429; pouchdb-
# server logs only warnings, so neither server spends the run writing request logs.
# Exit codes: 0 measured and verified (the last line says PASS or FAIL against the goals);
# 1 a server failed to start or lost or changed a document; 2 usage error.
set -euo pipefail

root="$(cd "$(dirname "$0")/../.." && pwd)"
version="${POUCHDB_SERVER_VERSION:-4.2.0}"
for tool in node npm python3; do
  command -v "$tool" >/dev/null || { echo "pouchdb.sh: $tool not found on PATH" >&2; exit 2; }
done

# The Spaces the client writes, peer-bN for each batch size N, for its Token; and the options
# that only this script sets.
spaces=()
batches="1,100,1000"
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  case "${args[$i]}" in
    -h | --help)
      sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    --batches) batches="${args[$((i + 1))]:-}" ;;
    --batches=*) batches="${args[$i]#--batches=}" ;;
    --prefix | --prefix=* | --driftless* | --token* | --pouchdb* | --fsync-probe*)
      echo "pouchdb.sh: ${args[$i]%%=*} is set by this script" >&2
      exit 2
      ;;
  esac
done
IFS=',' read -ra sizes <<<"$batches"
for n in "${sizes[@]}"; do
  [[ "$n" =~ ^[1-9][0-9]*$ ]] || { echo "pouchdb.sh: --batches: $n is not a positive integer" >&2; exit 2; }
  spaces+=(--space "peer-b$n")
done

work="$(mktemp -d "${TMPDIR:-/tmp}/driftless-peer.XXXXXX")"
driftless_pid=""
pouchdb_pid=""
stop() {
  local pid
  for pid in "$driftless_pid" "$pouchdb_pid"; do
    if [ -n "$pid" ]; then
      kill "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
    fi
  done
  rm -rf "$work"
}
trap stop EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Waits until FILE holds a line matching PATTERN (or the process PID is gone): a started server.
wait_for() {
  local file="$1" pattern="$2" pid="$3" _
  for _ in $(seq 1 300); do
    grep -q "$pattern" "$file" 2>/dev/null && return 0
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "pouchdb.sh: a server did not start; its output:" >&2
  cat "$file" >&2
  exit 1
}

if [ -n "${DRIFTLESS:-}" ]; then
  bin="$DRIFTLESS"
else
  (cd "$root" && cargo build --release --quiet)
  bin="$root/target/release/driftless"
fi
[ -x "$bin" ] || { echo "pouchdb.sh: $bin is not an executable" >&2; exit 2; }

if [ -n "${POUCHDB_SERVER_PREFIX:-}" ]; then
  prefix="$POUCHDB_SERVER_PREFIX"
else
  prefix="$work/npm"
  echo "installing pouchdb-server@$version from the npm registry into $prefix ..." >&2
  npm install --prefix "$prefix" --no-audit --no-fund --loglevel=error "pouchdb-server@$version" >&2
fi
pouchdb_bin="$prefix/node_modules/.bin/pouchdb-server"
[ -x "$pouchdb_bin" ] || { echo "pouchdb.sh: no pouchdb-server in $prefix" >&2; exit 2; }
pouchdb_version="$(node -p "require('$prefix/node_modules/pouchdb-server/package.json').version")"

# Driftless: port 0 picks a free port and the server prints it.
"$bin" token --data "$work/driftless" --init --user peer --space peer-b1 >/dev/null
"$bin" serve --listen 127.0.0.1:0 --data "$work/driftless" --rate-limit 1000000 \
  >"$work/driftless.log" 2>&1 &
driftless_pid=$!
wait_for "$work/driftless.log" "^listening on " "$driftless_pid"
driftless_url="$(sed -n 's/^listening on //p' "$work/driftless.log" | head -n1)"

# pouchdb-server takes --port 0 for its default 5984, so the free port is found here (released
# just before the server binds it; a clash makes the start fail loudly, never a wrong result).
pouchdb_port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
mkdir -p "$work/pouchdb/db"
printf '{"log": {"level": "warning", "file": "%s"}}\n' "$work/pouchdb/log.txt" >"$work/pouchdb/config.json"
(cd "$work/pouchdb" && exec "$pouchdb_bin" --host 127.0.0.1 --port "$pouchdb_port" --dir "$work/pouchdb/db" \
  --config "$work/pouchdb/config.json" --no-stdout-logs >"$work/pouchdb.log" 2>&1) &
pouchdb_pid=$!
pouchdb_url="http://127.0.0.1:$pouchdb_port"
for _ in $(seq 1 300); do
  curl -fsS "$pouchdb_url/" >"$work/pouchdb-welcome.json" 2>/dev/null && break
  kill -0 "$pouchdb_pid" 2>/dev/null || break
  sleep 0.1
done
grep -q '"express-pouchdb"' "$work/pouchdb-welcome.json" 2>/dev/null || {
  echo "pouchdb.sh: pouchdb-server did not start; its output:" >&2
  cat "$work/pouchdb.log" >&2
  exit 1
}

token="$("$bin" token --data "$work/driftless" --user peer "${spaces[@]}" --scope write --ttl 3600)"

echo "driftless $("$bin" --version 2>/dev/null | awk '{print $2}') at $driftless_url (pid $driftless_pid);" \
  "pouchdb-server $pouchdb_version at $pouchdb_url (pid $pouchdb_pid)"
python3 "$root/bench/peers/peer_client.py" --driftless "$driftless_url" --token "$token" \
  --pouchdb "$pouchdb_url" --prefix peer --driftless-pid "$driftless_pid" --pouchdb-pid "$pouchdb_pid" \
  --fsync-probe "$work" "$@"
