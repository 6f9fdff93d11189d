#!/usr/bin/env bash
# Exercises every file in deploy/ (called by scripts/test.sh, which .ci/run runs):
#
# 1. systemd/tsunagu.service: `systemd-analyze verify` on the shipped unit, copied with only
#    ExecStart's path replaced by the binary built here (no stub in /usr/local/bin), and its
#    exposure score from `systemd-analyze security --offline`.
# 2. caddy/Caddyfile: `caddy validate` and `caddy fmt` on the shipped file as it is.
# 3. nginx/tsunagu.conf: `nginx -t`, then used for real: a gateway (cargo's debug build) runs
#    with systemd/gateway.toml on a free loopback port, nginx runs the site file with only the
#    name, ports, certificate paths and upstream replaced (the diff is printed) and a
#    certificate made here with openssl, and test/conversation.py holds a conversation
#    through it over TLS (a person and an operator), checking the security headers too.
# 4. Several nodes: compose/compose.yaml parsed and validated by docker-compose's own loader
#    (`docker-compose config`, Debian's package) with compose/.env.example, then checked for
#    what it means (test/compose_check.py); kubernetes/*.yaml validated against Kubernetes'
#    schemas (`kubernetes-validate --strict`, PyPI) for the oldest and newest versions it
#    ships that we support, then checked together (test/kubernetes_check.py); the Grafana
#    dashboard grafana/tsunagu.json checked against the /metrics of the gateway of step 3
#    after its conversation (test/dashboard_check.py), its queries parsed by promtool; every
#    TSUNAGU_ setting the files set is documented (test/settings_check.py: the gateway ignores
#    unknown ones, with only a warning). A Sentinel runs compose/sentinel.conf, and gateways run with the Compose
#    file's and the ConfigMap's settings through it. Each checker is also run once on a broken
#    copy, which it must reject.
# 5. Dockerfile: built with podman on a base image made here with debootstrap (minbase, from
#    the machine's own Debian mirror) and `podman import`, with the gateway's release binary
#    stripped; then the gateway is run from the image's root filesystem (`podman image mount`
#    and chroot, as the image's user, with its environment, working directory, entry point and
#    a fresh /data for the volume): it starts, answers /healthz, the image's HEALTHCHECK
#    command passes, and SIGTERM stops it within the drain. Prints the image's size.
# 6. haproxy/haproxy.cfg: test/multinode.py builds the topology of several nodes from processes
#    on this machine, each host in a network namespace of its own (HAProxy with the shipped file
#    unchanged, three gateways of the release build, Redis with a replica and three sentinels,
#    PostgreSQL); through HAProxy over TLS people and operators converse while every gateway is
#    restarted in turn (SIGTERM, then started again), and nothing may be lost, doubled or
#    reordered. Prints a SKIP line where the kernel refuses network namespaces.
#
# Installs what it lacks with apt-get (systemd, nginx, caddy, podman, debootstrap, openssl,
# binutils, docker-compose, prometheus for promtool, haproxy, redis-server, postgresql,
# iproute2) and the `websockets` and `kubernetes-validate` Python packages with pip. Keeps
# nothing between runs (podman's storage lives in a temporary directory, vfs driver, set by
# flags: no machine configuration is changed). Run as root on Debian. GATEWAY_DEBUG_BIN / GATEWAY_RELEASE_BIN may name
# binaries already built; otherwise cargo builds them.
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$PWD"

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
step() { printf '\n==> deploy: %s\n' "$*"; }
now() { date +%s.%N; }
since() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f} s')" "$1" "$(now)"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_http() { # url, seconds
  for _ in $(seq $(($2 * 10))); do
    curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "deploy: $1 did not answer within $2 s" >&2
  return 1
}

# Waits for a background job to end after SIGTERM, at most the unit's TimeoutStopSec (20 s).
stopped_within() { # pid, seconds
  for _ in $(seq $(($2 * 10))); do
    kill -0 "$1" 2>/dev/null || { wait "$1"; return $?; }
    sleep 0.1
  done
  echo "deploy: still running $2 s after SIGTERM" >&2
  return 1
}

t_all="$(now)"
missing=()
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
command -v nginx >/dev/null 2>&1 || missing+=(nginx)
command -v caddy >/dev/null 2>&1 || missing+=(caddy)
command -v podman >/dev/null 2>&1 || missing+=(podman)
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v strip >/dev/null 2>&1 || missing+=(binutils)
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v haproxy >/dev/null 2>&1 || missing+=(haproxy)
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
if [ ${#missing[@]} -gt 0 ]; then
  step "installing ${missing[*]} with apt-get"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if ! python3 -c 'import websockets.sync.client' >/dev/null 2>&1; then
  step "installing websockets (pip)"
  python3 -m pip install --quiet --disable-pip-version-check 'websockets==15.0.1' \
    || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages 'websockets==15.0.1'
fi

if ! python3 -c "import kubernetes_validate, yaml" >/dev/null 2>&1; then
  step "installing kubernetes-validate (pip)"
  python3 -m pip install --quiet --disable-pip-version-check 'kubernetes-validate==1.37.0' \
    || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages 'kubernetes-validate==1.37.0'
fi

work="$(mktemp -d /tmp/tsunagu-deploy.XXXXXX)"
pids=()
podman_cmd=(podman --root "$work/podman/storage" --runroot "$work/podman/run"
  --storage-driver vfs --cgroup-manager cgroupfs --events-backend file)
cleanup() {
  # The gateway run from the image is unshare's grandchild: signal it by its own pid.
  if [ -f "$work/image-gateway.pid" ]; then kill "$(cat "$work/image-gateway.pid")" 2>/dev/null || true; fi
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ -d "$work/podman" ]; then
    "${podman_cmd[@]}" image unmount --all >/dev/null 2>&1 || true
    "${podman_cmd[@]}" rmi --all --force >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

debug_bin="${GATEWAY_DEBUG_BIN:-}"
if [ -z "$debug_bin" ]; then
  step "cargo build -p gateway (debug, for the proxy test)"
  cargo build -q -p gateway --bin gateway
  debug_bin="$repo/target/debug/gateway"
fi

# --- 1. systemd unit ---------------------------------------------------------------------
step "systemd-analyze verify deploy/systemd/tsunagu.service"
t="$(now)"
mkdir -p "$work/systemd"
sed "s#/usr/local/bin/tsunagu-gateway#$debug_bin#" deploy/systemd/tsunagu.service \
  >"$work/systemd/tsunagu.service"
diff deploy/systemd/tsunagu.service "$work/systemd/tsunagu.service" | grep '^[<>]' || true
# verify prints problems and exits non-zero on them; warnings also count as failures here.
out="$(systemd-analyze verify "$work/systemd/tsunagu.service" 2>&1)" || { echo "$out"; exit 1; }
if [ -n "$out" ]; then echo "$out"; echo "deploy: systemd-analyze verify is not silent" >&2; exit 1; fi
exposure="$(systemd-analyze security --offline=true "$work/systemd/tsunagu.service" 2>/dev/null \
  | grep -o 'Overall exposure level.*' || true)"
echo "unit verified; $exposure ($(since "$t"))"

# The figures the files are sized from, against the gateway's defaults in docs/configuration.md.
default_ms() { sed -nE "s/^\| \`$1\` \| \`([0-9]+)\`.*/\1/p" docs/configuration.md; }
heartbeat_ms="$(default_ms heartbeat_ms)"; grace_ms="$(default_ms shutdown_grace_ms)"
stop_s="$(grep -oE '^TimeoutStopSec=[0-9]+s$' deploy/systemd/tsunagu.service | grep -oE '[0-9]+')"
read_s="$(grep -oE 'proxy_read_timeout [0-9]+s;' deploy/nginx/tsunagu.conf | grep -oE '[0-9]+')"
send_s="$(grep -oE 'proxy_send_timeout [0-9]+s;' deploy/nginx/tsunagu.conf | grep -oE '[0-9]+')"
: "${heartbeat_ms:?}" "${grace_ms:?}" "${stop_s:?}" "${read_s:?}" "${send_s:?}"
if [ $((stop_s * 1000)) -le "$grace_ms" ] || [ $((read_s * 1000)) -le $((3 * heartbeat_ms)) ] \
  || [ $((send_s * 1000)) -le $((3 * heartbeat_ms)) ]; then
  echo "deploy: TimeoutStopSec=${stop_s}s must exceed shutdown_grace_ms ($grace_ms), nginx's" \
    "timeouts (${read_s}s, ${send_s}s) 3 x heartbeat_ms ($heartbeat_ms)" >&2
  exit 1
fi
echo "TimeoutStopSec ${stop_s} s > drain $((grace_ms / 1000)) s; nginx websocket timeouts ${read_s} s > 3 heartbeats $((3 * heartbeat_ms / 1000)) s"

# --- 2. Caddy ------------------------------------------------------------------------------
step "caddy validate deploy/caddy/Caddyfile"
t="$(now)"
(cd "$work" && HOME="$work" XDG_DATA_HOME="$work" XDG_CONFIG_HOME="$work" \
  caddy validate --config "$repo/deploy/caddy/Caddyfile" --adapter caddyfile 2>&1 | tail -1)
# `caddy fmt` leaves a well-formatted file as it is.
if ! caddy fmt deploy/caddy/Caddyfile | diff -u deploy/caddy/Caddyfile - ; then
  echo "deploy: deploy/caddy/Caddyfile is not as caddy fmt writes it" >&2
  exit 1
fi
echo "Caddyfile valid and formatted ($(since "$t"))"

# --- 3. nginx in front of a real gateway ------------------------------------------------------
step "nginx -t, then a conversation through deploy/nginx/tsunagu.conf over TLS"
t="$(now)"
gw_port="$(free_port)"; https_port="$(free_port)"; http_port="$(free_port)"
mkdir -p "$work/tls" "$work/state" "$work/nginx"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
  -keyout "$work/tls/privkey.pem" -out "$work/tls/fullchain.pem" 2>/dev/null
# The shipped site with only these replaced (documented in deploy/README.md).
sed -e "s#/etc/letsencrypt/live/chat.npo.example/fullchain.pem#$work/tls/fullchain.pem#" \
    -e "s#/etc/letsencrypt/live/chat.npo.example/privkey.pem#$work/tls/privkey.pem#" \
    -e "s#server_name chat.npo.example;#server_name localhost;#" \
    -e "s#server 127.0.0.1:8080;#server 127.0.0.1:$gw_port;#" \
    -e "s#listen 80;#listen 127.0.0.1:$http_port;#" \
    -e "s#listen 443 ssl http2;#listen 127.0.0.1:$https_port ssl http2;#" \
    -e "/listen \[::\]:/d" \
    deploy/nginx/tsunagu.conf >"$work/nginx/tsunagu.conf"
diff deploy/nginx/tsunagu.conf "$work/nginx/tsunagu.conf" | grep '^[<>]' || true
if grep -nE 'chat\.npo\.example|:8080|listen (80|443)' "$work/nginx/tsunagu.conf"; then
  echo "deploy: the substitutions above no longer match deploy/nginx/tsunagu.conf" >&2
  exit 1
fi
# nginx.conf as deploy/README.md asks for (descriptors and connections), with its files here.
cat >"$work/nginx/nginx.conf" <<CONF
worker_processes auto;
worker_rlimit_nofile 65536;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
events { worker_connections 16384; }
http {
    include /etc/nginx/mime.types;
    client_body_temp_path $work/nginx/body;
    proxy_temp_path $work/nginx/proxy;
    fastcgi_temp_path $work/nginx/fastcgi;
    uwsgi_temp_path $work/nginx/uwsgi;
    scgi_temp_path $work/nginx/scgi;
    access_log off;
    include $work/nginx/tsunagu.conf;
}
CONF
nginx -t -q -c "$work/nginx/nginx.conf" -e "$work/nginx/error.log"

gw_env=(TSUNAGU_SERVER__PORT="$gw_port"
  TSUNAGU_SERVER__PUBLIC_URL="https://localhost:$https_port"
  TSUNAGU_DATABASE__SQLITE_PATH="$work/state/tsunagu.db")
head -c 24 /dev/urandom | base64 >"$work/password"
(cd "$work/state" && env "${gw_env[@]}" "$debug_bin" --config "$repo/deploy/systemd/gateway.toml" \
  user add --username deploy-op --display-name "Deploy Operator" --password-stdin \
  <"$work/password" >/dev/null)
(cd "$work/state" && exec env "${gw_env[@]}" "$debug_bin" --config "$repo/deploy/systemd/gateway.toml" serve \
  >"$work/gateway.log" 2>&1) &
gw_pid=$!; pids+=("$gw_pid")
nginx -c "$work/nginx/nginx.conf" -e "$work/nginx/error.log" -g 'daemon off;' &
pids+=($!)
wait_http "http://127.0.0.1:$gw_port/healthz" 60
for _ in $(seq 50); do
  curl -fsS -o /dev/null --cacert "$work/tls/fullchain.pem" "https://localhost:$https_port/healthz" 2>/dev/null && break
  sleep 0.1
done
python3 deploy/test/conversation.py --proxy "https://localhost:$https_port" \
  --plain "http://localhost:$http_port" --gateway "http://127.0.0.1:$gw_port" \
  --ca "$work/tls/fullchain.pem" --username deploy-op --password-file "$work/password" \
  || { tail -20 "$work/gateway.log"; cat "$work/nginx/error.log"; exit 1; }
# What the gateway exports after a conversation and one refused frame (a family with no
# sample is not written at all), for the dashboard's check (step 4).
python3 - "$gw_port" <<'PY'
import json, sys
from websockets.sync.client import connect
port = sys.argv[1]
with connect(f"ws://127.0.0.1:{port}/ws/visitor", origin=f"http://127.0.0.1:{port}", open_timeout=10) as ws:
    ws.send(json.dumps({"type": "no_such_frame"}))
    assert json.loads(ws.recv(timeout=10))["type"] == "error"
PY
curl -fsS "http://127.0.0.1:$gw_port/metrics" >"$work/metrics.txt"
# The drain the unit's TimeoutStopSec is sized for.
t_stop="$(now)"
kill -TERM "$gw_pid"
stopped_within "$gw_pid" 20 || { echo "deploy: the gateway did not stop cleanly on SIGTERM" >&2; exit 1; }
echo "gateway stopped on SIGTERM in $(since "$t_stop") (exit 0); proxy test $(since "$t")"

# --- 4. Several nodes: Compose, Kubernetes, Grafana ----------------------------------------
step "several nodes: docker-compose config, kubernetes-validate, the dashboard against /metrics"
t="$(now)"
# Must fail on what it checks: run each checker once on a broken copy first.
expect_rejected() { # what, the message it must give, then the command
  local what="$1" message="$2"; shift 2
  if "$@" >"$work/rejected.log" 2>&1 || ! grep -q -- "$message" "$work/rejected.log"; then
    cat "$work/rejected.log"; echo "deploy: the check did not reject $what with \"$message\"" >&2; exit 1
  fi
}
# Compose: docker-compose's loader interpolates .env.example, merges the anchors and validates
# every key against its schema (an unknown key is an error); the checks read its output.
compose_config() { # compose file
  docker-compose --project-directory deploy/compose --env-file deploy/compose/.env.example -f "$1" config
}
compose_config deploy/compose/compose.yaml >"$work/compose.yaml"
python3 deploy/test/compose_check.py --config "$work/compose.yaml" --compose deploy/compose/compose.yaml \
  --sentinel deploy/compose/sentinel.conf --grace-ms "$grace_ms"
mkdir -p "$work/compose-broken"
sed 's/stop_grace_period: 20s/stop_grace_periods: 20s/' deploy/compose/compose.yaml >"$work/compose-broken/unknown-key.yaml"
expect_rejected "an unknown key in compose.yaml" "Unsupported config option for services.gateway-1: 'stop_grace_periods'" \
  compose_config "$work/compose-broken/unknown-key.yaml"
sed 's/stop_grace_period: 20s/stop_grace_period: 5s/' deploy/compose/compose.yaml >"$work/compose-broken/short-stop.yaml"
compose_config "$work/compose-broken/short-stop.yaml" >"$work/compose-broken/short-stop.config.yaml"
expect_rejected "a stop grace period below the drain" "FAIL gateway-1: stop_grace_period 5 s" \
  python3 deploy/test/compose_check.py --config "$work/compose-broken/short-stop.config.yaml" \
  --compose deploy/compose/compose.yaml --sentinel deploy/compose/sentinel.conf --grace-ms "$grace_ms"
# Sentinel from the shipped sentinel.conf (only its port, directory and the primary's address
# replaced), watching a real redis-server; then a gateway with gateway-1's environment exactly as
# Compose resolved it, but for its listen address, store (that Sentinel), database and key: it
# must accept every setting and become ready through Sentinel.
redis_port="$(free_port)"; sentinel_port="$(free_port)"
mkdir -p "$work/redis"
sed -e "s/^port 26379$/port $sentinel_port/" -e "s#^dir /data\$#dir $work/redis#" \
  -e "s/^sentinel monitor tsunagu redis-primary 6379 2$/sentinel monitor tsunagu 127.0.0.1 $redis_port 2/" \
  deploy/compose/sentinel.conf >"$work/redis/sentinel.conf"
diff deploy/compose/sentinel.conf "$work/redis/sentinel.conf" | grep '^[<>]' || true
[ "$(diff deploy/compose/sentinel.conf "$work/redis/sentinel.conf" | grep -c '^>')" = 3 ] \
  || { echo "deploy: the substitutions above no longer match deploy/compose/sentinel.conf" >&2; exit 1; }
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no --dir "$work/redis" \
  >"$work/redis/redis.log" 2>&1 &
redis_pid=$!; pids+=("$redis_pid")
redis-server "$work/redis/sentinel.conf" --sentinel --bind 127.0.0.1 >"$work/redis/sentinel.log" 2>&1 &
sentinel_pid=$!; pids+=("$sentinel_pid")
for _ in $(seq 50); do
  [ "$(redis-cli -p "$sentinel_port" sentinel get-master-addr-by-name tsunagu 2>/dev/null | tr '\n' ' ')" = "127.0.0.1 $redis_port " ] && break
  sleep 0.1
done
master="$(redis-cli -p "$sentinel_port" sentinel master tsunagu | paste -sd' ')"
for want in "quorum 2" "down-after-milliseconds 5000"; do
  case " $master " in *" $want "*) ;; *) cat "$work/redis/sentinel.log"; echo "deploy: Sentinel has no $want: $master" >&2; exit 1 ;; esac
done
echo "Sentinel runs sentinel.conf: primary 127.0.0.1:$redis_port, quorum 2, down after 5000 ms"
mapfile -t compose_env < <(python3 -c '
import sys, yaml
env = yaml.safe_load(open(sys.argv[1]))["services"]["gateway-1"]["environment"]
print("\n".join(f"{k}={v}" for k, v in env.items()))' "$work/compose.yaml")
# .env.example's placeholders must not run: its escalation key stops the gateway at start.
if (cd "$work/state" && exec env "${compose_env[@]}" TSUNAGU_SERVER__HOST=127.0.0.1 TSUNAGU_SERVER__PORT=0 \
  TSUNAGU_DATABASE__URL="sqlite:$work/state/placeholder.db" timeout 20 "$debug_bin" serve >"$work/placeholder.log" 2>&1) \
  || ! grep -q 'escalation.key must be 64 hex characters' "$work/placeholder.log"; then
  tail -5 "$work/placeholder.log"; echo "deploy: a gateway started with .env.example's placeholder key" >&2; exit 1
fi
echo "with .env.example as it is, the gateway refuses to start: $(grep -m1 '^Error' "$work/placeholder.log")"
cgw_port="$(free_port)"
(cd "$work/state" && exec env "${compose_env[@]}" TSUNAGU_SERVER__HOST=127.0.0.1 TSUNAGU_SERVER__PORT="$cgw_port" \
  TSUNAGU_STORE__URL="redis+sentinel://127.0.0.1:$sentinel_port/tsunagu" TSUNAGU_STORE__WAIT_REPLICAS=0 \
  TSUNAGU_DATABASE__URL="sqlite:$work/state/compose.db" TSUNAGU_ESCALATION__KEY="$(openssl rand -hex 32)" \
  "$debug_bin" serve >"$work/compose-gateway.log" 2>&1) &
cgw_pid=$!; pids+=("$cgw_pid")
wait_http "http://127.0.0.1:$cgw_port/readyz" 30 || { tail -20 "$work/compose-gateway.log"; exit 1; }
kill -TERM "$cgw_pid"
stopped_within "$cgw_pid" 20 || { tail -20 "$work/compose-gateway.log"; exit 1; }
echo "a gateway with Compose's environment (${#compose_env[@]} settings) was ready through Sentinel and stopped on SIGTERM"
# Kubernetes: every file against the schemas of the oldest and newest version we support.
for version in 1.30.0 1.37.0; do
  python3 -m kubernetes_validate --strict --quiet -k "$version" deploy/kubernetes/*.yaml
done
echo "kubernetes-validate --strict: $(ls deploy/kubernetes/*.yaml | wc -l) files valid for Kubernetes 1.30 and 1.37"
mkdir -p "$work/k8s-broken"
sed 's/readOnlyRootFilesystem/readOnlyRootFileSystem/' deploy/kubernetes/deployment.yaml >"$work/k8s-broken/deployment.yaml"
expect_rejected "a misspelt field in deployment.yaml" "'readOnlyRootFileSystem' was unexpected" python3 -m kubernetes_validate --strict --quiet -k 1.37.0 "$work/k8s-broken/deployment.yaml"
python3 deploy/test/kubernetes_check.py deploy/kubernetes "$grace_ms"
cp deploy/kubernetes/*.yaml "$work/k8s-broken/"
sed -i 's/terminationGracePeriodSeconds: 20/terminationGracePeriodSeconds: 12/' "$work/k8s-broken/deployment.yaml"
expect_rejected "a grace period shorter than preStop and the drain" "FAIL terminationGracePeriodSeconds 12 s" python3 deploy/test/kubernetes_check.py "$work/k8s-broken" "$grace_ms"
# The ConfigMap's settings on a real gateway (TLS with step 3's certificate, the Sentinel
# above; the Secret's two values made here): it must start and answer /readyz over HTTPS.
mapfile -t k8s_env < <(python3 -c '
import sys, yaml
(cm,) = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
print("\n".join(f"{k}={v}" for k, v in cm["data"].items()))' deploy/kubernetes/configmap.yaml)
kgw_port="$(free_port)"
(cd "$work/state" && exec env "${k8s_env[@]}" TSUNAGU_SERVER__HOST=127.0.0.1 TSUNAGU_SERVER__PORT="$kgw_port" \
  TSUNAGU_SERVER__TLS_CERT_FILE="$work/tls/fullchain.pem" TSUNAGU_SERVER__TLS_KEY_FILE="$work/tls/privkey.pem" \
  TSUNAGU_STORE__URL="redis+sentinel://127.0.0.1:$sentinel_port/tsunagu" TSUNAGU_STORE__WAIT_REPLICAS=0 \
  TSUNAGU_DATABASE__URL="sqlite:$work/state/k8s.db" TSUNAGU_ESCALATION__KEY="$(openssl rand -hex 32)" \
  "$debug_bin" serve >"$work/k8s-gateway.log" 2>&1) &
kgw_pid=$!; pids+=("$kgw_pid")
for _ in $(seq 300); do
  curl -fsS -o /dev/null --cacert "$work/tls/fullchain.pem" "https://localhost:$kgw_port/readyz" 2>/dev/null && break
  sleep 0.1
done
curl -fsS -o /dev/null --cacert "$work/tls/fullchain.pem" "https://localhost:$kgw_port/readyz" \
  || { tail -20 "$work/k8s-gateway.log"; echo "deploy: the ConfigMap's gateway did not become ready" >&2; exit 1; }
kill -TERM "$kgw_pid"
stopped_within "$kgw_pid" 20 || { tail -20 "$work/k8s-gateway.log"; exit 1; }
echo "a gateway with the ConfigMap's settings (${#k8s_env[@]}) served /readyz over HTTPS through Sentinel"
kill "$redis_pid" "$sentinel_pid" 2>/dev/null || true
# The gateway ignores TSUNAGU_ variables it does not know (with a warning at start): each one
# set must be documented.
python3 deploy/test/settings_check.py docs/configuration.md deploy/compose/compose.yaml \
  deploy/kubernetes/*.yaml deploy/Dockerfile deploy/README.md
sed 's/TSUNAGU_STORE__WAIT_REPLICAS/TSUNAGU_STORE__WAIT_REPLICA/' deploy/kubernetes/configmap.yaml >"$work/k8s-broken/configmap.yaml"
expect_rejected "a misspelt setting" "TSUNAGU_STORE__WAIT_REPLICA is not a documented setting" \
  python3 deploy/test/settings_check.py docs/configuration.md "$work/k8s-broken/configmap.yaml"
# Grafana: names and labels against the real /metrics, the PromQL through promtool.
python3 deploy/test/dashboard_check.py --dashboard deploy/grafana/tsunagu.json \
  --metrics "$work/metrics.txt" --rules "$work/dashboard-rules.yml"
promtool check rules "$work/dashboard-rules.yml" >/dev/null
echo "promtool: every dashboard query parses"
sed 's/tsunagu_queue_length/tsunagu_queue_lenght/' deploy/grafana/tsunagu.json >"$work/broken-dashboard.json"
expect_rejected "a metric the gateway does not export" "tsunagu_queue_lenght is not exported" python3 deploy/test/dashboard_check.py \
  --dashboard "$work/broken-dashboard.json" --metrics "$work/metrics.txt" --rules "$work/broken-rules.yml"
echo "compose, Kubernetes and Grafana files checked ($(since "$t"))"

# --- 5. Container image ------------------------------------------------------------------------
step "the image: debootstrap base, podman build deploy/Dockerfile, the gateway from its root filesystem"
t="$(now)"
release_bin="${GATEWAY_RELEASE_BIN:-}"
if [ -z "$release_bin" ]; then
  cargo build -q --release -p gateway --bin gateway
  release_bin="$repo/target/release/gateway"
fi
mkdir -p "$work/image"
strip -o "$work/image/gateway" "$release_bin"
# The base as Debian's slim image would be: this machine's release, from its own mirror.
. /etc/os-release
mirror="$(grep -hoE '^(URIs:|deb)[[:space:]]+[^[:space:]]+' /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null \
  | awk '{print $2}' | grep -E '/debian/?$' | head -n1 || true)"
mirror="${mirror:-http://deb.debian.org/debian}"
t_step="$(now)"
if ! debootstrap --variant=minbase "$VERSION_CODENAME" "$work/base" "$mirror" >"$work/debootstrap.log" 2>&1; then
  tail -20 "$work/debootstrap.log"
  echo "deploy: debootstrap failed (mirror $mirror)" >&2
  exit 1
fi
echo "debootstrap $VERSION_CODENAME minbase from $mirror: $(since "$t_step")"
# What the slim image leaves out: documentation, manual pages, apt's lists and caches.
tar -C "$work/base" --exclude=./usr/share/doc --exclude=./usr/share/man --exclude=./usr/share/info \
  --exclude='./var/lib/apt/lists/*' --exclude='./var/cache/apt/*' --exclude='./var/log/*' -c . \
  | "${podman_cmd[@]}" import --quiet - localhost/tsunagu-test-base:latest >/dev/null
rm -rf "$work/base"
t_step="$(now)"
"${podman_cmd[@]}" build --quiet --layers=false --isolation chroot --network host --format docker \
  --build-arg BASE=localhost/tsunagu-test-base:latest -f deploy/Dockerfile \
  -t localhost/tsunagu-gateway:test "$work/image" >"$work/build.log" 2>&1 \
  || { tail -30 "$work/build.log"; echo "deploy: podman build failed" >&2; exit 1; }
echo "podman build: $(since "$t_step")"
base_size="$("${podman_cmd[@]}" image inspect --format '{{.Size}}' localhost/tsunagu-test-base:latest)"
size="$("${podman_cmd[@]}" image inspect --format '{{.Size}}' localhost/tsunagu-gateway:test)"
"${podman_cmd[@]}" image inspect localhost/tsunagu-gateway:test >"$work/image.json"
root="$("${podman_cmd[@]}" image mount localhost/tsunagu-gateway:test)"
bin_size="$(stat -c %s "$root/usr/local/bin/gateway")"
if readelf -S "$root/usr/local/bin/gateway" | grep -q '\.symtab'; then
  echo "deploy: the image's gateway binary is not stripped" >&2
  exit 1
fi
img_port="$(free_port)"
mkdir -p "$work/volume"
# The image's own configuration, read from its metadata: user, environment, working directory,
# entry point and command, and the HEALTHCHECK command.
eval "$(python3 - "$work/image.json" "$root" <<'PY'
import json, shlex, sys
cfg = json.load(open(sys.argv[1]))[0]
root = sys.argv[2]
c = cfg["Config"]
user, _, group = c["User"].partition(":")
def lookup(path, name):
    for line in open(f"{root}{path}"):
        f = line.split(":")
        if f[0] == name or f[2] == name:
            return f[2]
    sys.exit(f"{name} not in {path}")
uid, gid = lookup("/etc/passwd", user), lookup("/etc/group", group or user)
hc = cfg["Healthcheck"]["Test"]
assert hc[0] == "CMD", hc
def arr(name, xs):
    return f"{name}=(" + " ".join(shlex.quote(x) for x in xs) + ")"
print(f"img_uid={uid}; img_gid={gid}")
print(f"img_workdir={shlex.quote(c['WorkingDir'])}")
print(arr("img_env", c["Env"]))
print(arr("img_cmd", c["Entrypoint"] + (c.get("Cmd") or [])))
print(arr("img_health", hc[1:]))
print(f"img_stopsignal={shlex.quote(c.get('StopSignal', ''))}")
print(arr("img_volumes", sorted(c.get("Volumes", {}))))
PY
)"
[ "$img_uid" != 0 ] || { echo "deploy: the image runs as root" >&2; exit 1; }
[ "${img_volumes[*]}" = "/data" ] || { echo "deploy: the image's volumes are ${img_volumes[*]}" >&2; exit 1; }
[ "$img_stopsignal" = SIGTERM ] || { echo "deploy: stop signal $img_stopsignal" >&2; exit 1; }
chown "$img_uid:$img_gid" "$work/volume"
chmod 0700 "$work/volume"
# A private mount namespace: /dev and the volume are bound into the image's root filesystem
# for this run only and vanish with it (the image itself is not written).
in_image() { # pid file, extra environment..., then -- and the command
  local pidfile="$1" extra=()
  shift
  while [ "$1" != -- ]; do extra+=("$1"); shift; done
  shift
  # The shell's pid is the command's: chroot, env and sh each exec the next.
  unshare --mount --propagation private --fork --kill-child=TERM -- sh -c '
    pidfile="$1"; root="$2"; volume="$3"; shift 3
    echo $$ >"$pidfile"
    mount --rbind /dev "$root/dev" && mount --bind "$volume" "$root/data" && exec "$@"' \
    sh "$pidfile" "$root" "$work/volume" \
    chroot --userspec="$img_uid:$img_gid" "$root" \
    env -i "${img_env[@]}" "${extra[@]}" sh -c 'cd "$0" && exec "$@"' "$img_workdir" "$@"
}
in_image "$work/image-gateway.pid" TSUNAGU_SERVER__PORT="$img_port" -- "${img_cmd[@]}" \
  >"$work/image-gateway.log" 2>&1 &
img_pid=$!; pids+=("$img_pid")
t_step="$(now)"
wait_http "http://127.0.0.1:$img_port/healthz" 30 || { cat "$work/image-gateway.log"; exit 1; }
echo "the gateway from the image answered /healthz $(since "$t_step") after start"
in_image "$work/healthcheck.pid" TSUNAGU_SERVER__PORT="$img_port" -- "${img_health[@]}" \
  || { echo "deploy: the image's HEALTHCHECK failed" >&2; exit 1; }
echo "the image's HEALTHCHECK passed"
[ "$(stat -c %u "$work/volume/tsunagu.db")" = "$img_uid" ] \
  || { echo "deploy: tsunagu.db is not in the volume, owned by the image's user" >&2; exit 1; }
t_stop="$(now)"
kill -TERM "$(cat "$work/image-gateway.pid")"
rm "$work/image-gateway.pid"
# unshare exits with the gateway's status.
stopped_within "$img_pid" 20 || { echo "deploy: the gateway from the image did not stop cleanly on SIGTERM" >&2; exit 1; }
echo "the gateway from the image stopped on SIGTERM in $(since "$t_stop") (exit 0)"
"${podman_cmd[@]}" image unmount localhost/tsunagu-gateway:test >/dev/null
mib() { python3 -c "print(f'{int(\"$1\") / 1048576:.1f} MiB')"; }
echo "image size $(mib "$size") (the debootstrapped base $(mib "$base_size"), added by deploy/Dockerfile $(mib $((size - base_size))), of it the stripped gateway $(mib "$bin_size")); image test $(since "$t")"

# --- 6. HAProxy in front of several nodes, restarted one at a time -----------------------------
step "deploy/haproxy/haproxy.cfg in front of three gateways, Redis with Sentinel and PostgreSQL: a rolling restart"
t="$(now)"
# Bounded: multinode.py cleans up on SIGTERM (namespaces, processes, its directory).
timeout --kill-after=20 300 python3 deploy/test/multinode.py --gateway-bin "$release_bin"
if ip netns list | grep -q '^tsmn'; then
  ip netns list
  echo "deploy: network namespaces left behind" >&2
  exit 1
fi
echo "multinode test $(since "$t")"

step "deploy files checked in $(since "$t_all")"
