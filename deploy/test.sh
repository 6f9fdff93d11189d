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
# 4. Dockerfile: built with podman on a base image made here with debootstrap (minbase, from
#    the machine's own Debian mirror) and `podman import`, with the gateway's release binary
#    stripped; then the gateway is run from the image's root filesystem (`podman image mount`
#    and chroot, as the image's user, with its environment, working directory, entry point and
#    a fresh /data for the volume): it starts, answers /healthz, the image's HEALTHCHECK
#    command passes, and SIGTERM stops it within the drain. Prints the image's size.
# 5. haproxy/haproxy.cfg: test/multinode.py builds the topology of several nodes from processes
#    on this machine, each host in a network namespace of its own (HAProxy with the shipped file
#    unchanged, three gateways of the release build, Redis with a replica and three sentinels,
#    PostgreSQL); through HAProxy over TLS people and operators converse while every gateway is
#    restarted in turn (SIGTERM, then started again), and nothing may be lost, doubled or
#    reordered. Prints a SKIP line where the kernel refuses network namespaces.
#
# Installs what it lacks with apt-get (systemd, nginx, caddy, podman, debootstrap, openssl,
# binutils, haproxy, redis-server, postgresql, iproute2) and the `websockets` Python package with pip. Keeps nothing between runs (podman's
# storage lives in a temporary directory, vfs driver, set by flags: no machine configuration
# is changed). Run as root on Debian. GATEWAY_DEBUG_BIN / GATEWAY_RELEASE_BIN may name
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
command -v haproxy >/dev/null 2>&1 || missing+=(haproxy)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
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
# The drain the unit's TimeoutStopSec is sized for.
t_stop="$(now)"
kill -TERM "$gw_pid"
stopped_within "$gw_pid" 20 || { echo "deploy: the gateway did not stop cleanly on SIGTERM" >&2; exit 1; }
echo "gateway stopped on SIGTERM in $(since "$t_stop") (exit 0); proxy test $(since "$t")"

# --- 4. Container image ------------------------------------------------------------------------
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

# --- 5. HAProxy in front of several nodes, restarted one at a time -----------------------------
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
