#!/usr/bin/env bash
# The load-test suite in one command: builds the gateway and the generator (release), installs
# the peer servers (npm ci in load-tests/peers), then runs `tsunagu-load suite`, every scenario
# against the gateway, the gateway in Redis mode (target gateway-redis: a redis-server of its own
# and 3 nodes, if redis-server is installed), the peers (Bun, ws, Socket.IO, and socketio-redis:
# Socket.IO on 3 Node.js processes sharing a redis-server of its own, if redis-server is
# installed) and the raw relay, with the servers pinned to core 0 and the generator to core 1.
#
#   bash scripts/bench.sh            # smoke size (CI): a couple of minutes, no timing assertions
#   bash scripts/bench.sh --full     # the issue's size: ~18k sessions, 1k-20k msg/s, 3 rounds
#   bash scripts/bench.sh --full --scenarios idle,steady --targets gateway,bun
#   bash scripts/bench.sh --scenarios steady,burst,storm --targets gateway,gateway-redis --redis-nodes 2
#
# Results: load-tests/results/<UTC time>/ (results.json, results.md, latency.svg, memory.svg).
# Fails if correctness breaks (messages lost or duplicated in the reconnect storm, order
# violations or failed arrivals in the gateway's burst, undelivered messages at smoke size).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "bench.sh needs Node.js and npm (scripts/test.sh installs them)" >&2
  exit 1
fi
if [ ! -d load-tests/peers/node_modules ] || [ load-tests/peers/package-lock.json -nt load-tests/peers/node_modules ]; then
  echo "==> Installing the peer servers (npm ci in load-tests/peers)"
  (cd load-tests/peers && npm ci --no-audit --no-fund --loglevel=error)
fi

echo "==> Building gateway and tsunagu-load (release)"
cargo build --release -q -p gateway -p load-tests

# The machine may be shared (other builds and tests): as root, run the generator and the
# servers it starts (they inherit it) at a higher priority, so they are not starved by others.
if [ "$(id -u)" -eq 0 ]; then
  prio=(nice -n -10)
else
  prio=()
fi
cores=$(nproc)
if [ "$cores" -ge 2 ]; then
  pin=(taskset -c 1)
  server_core=(--server-core 0)
else
  pin=()
  server_core=()
fi
echo "==> Running the suite (load average: $(cut -d' ' -f1-3 /proc/loadavg))"
exec "${prio[@]}" "${pin[@]}" ./target/release/tsunagu-load suite "${server_core[@]}" "$@"
