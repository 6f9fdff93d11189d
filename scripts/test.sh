#!/usr/bin/env bash
# Installs whatever is missing (Debian's redis-server and Chromium, Node.js, the browser-test
# packages from e2e/package-lock.json and the load-test peer servers from
# load-tests/peers/package-lock.json), then runs every check and test: rustfmt, clippy with
# warnings as errors, the Rust unit and integration tests (the store and API suites also against
# a real redis-server; the database suite on SQLite and on a PostgreSQL cluster of its own; the
# cluster tests start gateway processes, redis-servers and Sentinels of their own on free ports), the browser tests in headless Chromium, and a smoke run of the
# load-test suite (scripts/bench.sh: no timing assertions, but it fails on lost, duplicated or
# misordered messages), and the deploy files (deploy/test.sh: the systemd unit, Caddy and nginx
# configurations, nginx in front of a running gateway over TLS, the Compose file, the Kubernetes
# manifests and the Grafana dashboard, the container image built with podman on a
# debootstrapped base, and HAProxy in front of three gateways with Redis, Sentinel and
# PostgreSQL, each host a network namespace, restarted one at a time under live
# conversations; it installs what it needs itself).
# Run as root (or with sudo available) on Debian. This is what CI runs (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# Each step prints how long the run has taken so far, so a slow step shows in CI's log.
t_start=$SECONDS
step() { printf '\n==> [%dm%02ds] %s\n' $(((SECONDS - t_start) / 60)) $(((SECONDS - t_start) % 60)) "$*"; }

missing=()
# redis-server brings redis-tools (redis-cli). The cluster tests run Sentinel as
# `redis-server --sentinel`, the same binary: Debian's redis-sentinel package only adds a
# symlink, a service and a config file, so it is not needed.
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
# The database conformance suite (gateway/tests/database.rs) starts PostgreSQL clusters of its
# own with Debian's initdb and pg_ctl (kept off PATH, under /usr/lib/postgresql/<version>/bin).
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || command -v initdb >/dev/null 2>&1 \
  || missing+=(postgresql)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
command -v python3 >/dev/null 2>&1 || missing+=(python3 python3-pip)
# The partition tests (gateway/tests/partitions.rs) make network namespaces with `ip` and cut
# or thin their links with nftables (without `nft` they cut by neighbour entries and skip loss).
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
command -v nft >/dev/null 2>&1 || missing+=(nftables)
# promtool (Debian's prometheus package) checks and unit-tests deploy/prometheus/alerts.yml.
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
if [ ${#missing[@]} -gt 0 ]; then
  step "Installing ${missing[*]} with apt-get"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! python3 -c 'import linebot.v3' >/dev/null 2>&1; then
  # LINE's official SDK signs and parses webhooks in the LINE connector's tests (gateway/tests/line.rs).
  step "Installing line-bot-sdk (pip)"
  python3 -m pip install --quiet --disable-pip-version-check 'line-bot-sdk==3.27.0' \
    || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages 'line-bot-sdk==3.27.0'
fi

if ! python3 -c 'import twilio' >/dev/null 2>&1; then
  # Twilio's official helper library signs voice webhooks in the phone connector's tests (gateway/tests/voice.rs).
  step "Installing twilio (pip)"
  python3 -m pip install --quiet --disable-pip-version-check 'twilio==9.13.0' \
    || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages 'twilio==9.13.0'
fi

if ! python3 -c 'import aiosmtpd' >/dev/null 2>&1; then
  # A real SMTP server receives the alert e-mails in gateway/tests/alerts.rs and the cluster tests.
  step "Installing aiosmtpd (pip)"
  python3 -m pip install --quiet --disable-pip-version-check 'aiosmtpd==1.4.6' \
    || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages 'aiosmtpd==1.4.6'
fi

step "Installing browser-test packages (npm ci)"
(cd e2e && npm ci --no-audit --no-fund --loglevel=error)

step "Installing the load-test peer servers (npm ci in load-tests/peers)"
(cd load-tests/peers && npm ci --no-audit --no-fund --loglevel=error)

step "Prometheus alerting rules (promtool check rules, promtool test rules)"
(cd deploy/prometheus && promtool check rules alerts.yml && promtool test rules alerts.test.yml)

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo test"
cargo test --workspace

step "The API suite again, against the Redis store (a redis-server of its own)"
redis_dir="$(mktemp -d)"
redis_port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no --dir "$redis_dir" \
  --daemonize yes --pidfile "$redis_dir/redis.pid" --logfile "$redis_dir/redis.log"
trap 'kill "$(cat "$redis_dir/redis.pid" 2>/dev/null)" 2>/dev/null || true; rm -rf "$redis_dir"' EXIT
for _ in $(seq 50); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.1; done
TSUNAGU_TEST_REDIS_URL="redis://127.0.0.1:$redis_port/" cargo test -p gateway --test api

step "Browser tests (headless Chromium)"
cargo build -p gateway --bin gateway
(cd e2e && GATEWAY_BIN="$PWD/../target/debug/gateway" npm test)

step "Load-test suite, smoke size (scripts/bench.sh)"
bash scripts/bench.sh --out target/load-results

step "Deploy files (deploy/test.sh: systemd unit, Caddy, nginx over TLS, Compose, Kubernetes, Grafana, the container image, HAProxy and a rolling restart)"
# The binaries the steps above built (bench.sh: release), so nothing is compiled again.
GATEWAY_DEBUG_BIN="$PWD/target/debug/gateway" GATEWAY_RELEASE_BIN="$PWD/target/release/gateway" \
  bash deploy/test.sh

step "All checks and tests passed"
