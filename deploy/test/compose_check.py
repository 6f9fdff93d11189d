#!/usr/bin/env python3
"""Checks what deploy/compose/compose.yaml means, on the configuration docker-compose's own
loader printed (`docker-compose config`: interpolated, anchors merged, validated), so that the
checks read what Compose will run rather than the file's text. Run by deploy/test.sh.

Checks: three gateways on the gateway image with health checks on /readyz or /healthz, a stop
grace period above the drain, started after PostgreSQL is healthy and the Sentinels started;
their store URL names the three Sentinel services and the master name sentinel.conf monitors;
the database URL names the PostgreSQL service; the trusted proxy is HAProxy's fixed address;
Redis is a primary and replicas of it, without persistence and not restarted by Docker;
HAProxy mounts ../haproxy/haproxy.cfg and publishes 443; no secret is written into
compose.yaml itself (each comes from .env); HAProxy's servers (GATEWAY_1..3, read by
haproxy.cfg from its environment) are the gateways' fixed addresses.
"""

import argparse
import re
import sys
from pathlib import Path
from urllib.parse import urlsplit

import yaml

failures = []
passed = []


def check(ok, what):
    """Records one check; prints only failures (and the count at the end)."""
    if ok:
        passed.append(what)
    else:
        print("FAIL " + what)
        failures.append(what)


def seconds(duration):
    """Compose durations as docker-compose prints them: '20s', '1m30s', '500ms'."""
    total = 0.0
    for n, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", str(duration)):
        total += float(n) * {"h": 3600, "m": 60, "s": 1, "ms": 0.001, "us": 1e-6}[unit]
    return total


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True, help="output of docker-compose config")
    ap.add_argument("--compose", required=True, help="deploy/compose/compose.yaml")
    ap.add_argument("--sentinel", required=True, help="deploy/compose/sentinel.conf")
    ap.add_argument("--grace-ms", type=int, required=True, help="server.shutdown_grace_ms default")
    a = ap.parse_args()

    cfg = yaml.safe_load(Path(a.config).read_text())
    services = cfg["services"]
    raw = yaml.safe_load(Path(a.compose).read_text())
    compose_dir = Path(a.compose).resolve().parent

    gateways = {n: s for n, s in services.items() if "TSUNAGU_STORE__URL" in (s.get("environment") or {})}
    check(sorted(gateways) == ["gateway-1", "gateway-2", "gateway-3"],
          f"three gateways: {sorted(gateways)}")

    monitor = re.search(r"^sentinel monitor (\S+) (\S+) (\d+) (\d+)$", Path(a.sentinel).read_text(), re.M)
    check(monitor is not None, "sentinel.conf monitors a primary")
    master_name, master_host, _, quorum = monitor.groups() if monitor else ("", "", "", "0")
    sentinels = sorted(n for n, s in services.items() if "--sentinel" in " ".join(map(str, s.get("command") or [])))
    check(len(sentinels) == 3 and int(quorum) == 2,
          f"three Sentinels with a quorum of two: {sentinels}, quorum {quorum}")
    check(master_host in services, f"the monitored primary {master_host!r} is a service")
    for n in sentinels:
        mounts = [v if isinstance(v, str) else f"{v.get('source')}:{v.get('target')}" for v in services[n].get("volumes", [])]
        check(any(str(compose_dir / "sentinel.conf") in m or m.startswith("./sentinel.conf") for m in mounts),
              f"{n} mounts sentinel.conf")

    redis = {n: s for n, s in services.items() if str(s.get("command", "")).startswith("redis-server") or
             (isinstance(s.get("command"), list) and s["command"][:1] == ["redis-server"])}
    commands = {n: " ".join(s["command"]) if isinstance(s["command"], list) else s["command"] for n, s in redis.items()}
    replicas = [n for n, c in commands.items() if f"--replicaof {master_host} 6379" in c]
    check(master_host in redis and len(replicas) >= 1,
          f"Redis: primary {master_host}, replicas {replicas}")
    for n, c in commands.items():
        check("--appendonly no" in c and '--save ""' in c,
              f"{n}: no persistence (no conversation text on disk)")
        check("--slowlog-log-slower-than -1" in c, f"{n}: slow log off (it would keep message text)")
        check(redis[n].get("restart", "no") == "no", f"{n}: not restarted by Docker (empty restart would be copied)")

    db = [n for n, s in services.items() if str(s.get("image", "")).startswith("postgres:")]
    check(len(db) == 1 and "healthcheck" in services[db[0]], f"one PostgreSQL with a health check: {db}")

    haproxy = services.get("haproxy", {})
    mounts = haproxy.get("volumes", [])
    cfg_mount = [m for m in mounts if (m if isinstance(m, str) else m.get("target", "")).find("haproxy.cfg") >= 0]
    check(len(cfg_mount) == 1, "HAProxy mounts haproxy.cfg")
    raw_mounts = raw["services"]["haproxy"]["volumes"]
    check(any(str(m).startswith("../haproxy/haproxy.cfg:") for m in raw_mounts),
          "HAProxy's configuration is ../haproxy/haproxy.cfg (deploy/haproxy/haproxy.cfg)")
    haproxy_cfg = compose_dir.parent / "haproxy" / "haproxy.cfg"
    if haproxy_cfg.exists():
        check(True, f"{haproxy_cfg.relative_to(compose_dir.parent.parent)} exists")
    else:
        print(f"skip {haproxy_cfg.relative_to(compose_dir.parent.parent)} is not in this checkout yet")
    ports = [str(p.get("published") if isinstance(p, dict) else p) for p in haproxy.get("ports", [])]
    check(any(p.startswith("443") or p == "443" for p in ports), f"HAProxy publishes 443: {ports}")
    proxy_ip = (haproxy.get("networks") or {}).get("edge", {}).get("ipv4_address")
    check(proxy_ip is not None, f"HAProxy has a fixed address: {proxy_ip}")
    check(not any(s.get("ports") for n, s in services.items() if n != "haproxy"),
          "nothing but HAProxy publishes a port")
    check(cfg["networks"].get("backend", {}).get("internal") is True,
          "Redis and PostgreSQL are on an internal network")

    # haproxy.cfg takes its servers from GATEWAY_1..3: each a gateway's fixed address and port.
    henv = haproxy.get("environment") or {}
    targets = sorted(v for k, v in henv.items() if re.fullmatch(r"GATEWAY_\d+", k))
    addresses = sorted(f"{s['networks']['edge'].get('ipv4_address')}:{s['environment']['TSUNAGU_SERVER__PORT']}"
                       for s in gateways.values() if (s.get("networks") or {}).get("edge"))
    check(len(targets) == 3 and targets == addresses,
          f"HAProxy's GATEWAY_1..3 are the gateways' fixed addresses: {targets} against {addresses}")

    for n, s in sorted(gateways.items()):
        env = s["environment"]
        hc = " ".join(s.get("healthcheck", {}).get("test", []))
        check(re.search(r"GET /(readyz|healthz) ", hc) is not None, f"{n}: health check on /readyz or /healthz")
        grace = seconds(s.get("stop_grace_period", "10s"))
        check(grace * 1000 > a.grace_ms, f"{n}: stop_grace_period {grace:g} s > drain {a.grace_ms} ms")
        check(s.get("stop_signal", "SIGTERM") == "SIGTERM", f"{n}: stopped with SIGTERM")
        deps = s.get("depends_on", {})
        check(deps.get(db[0] if db else "postgres", {}).get("condition") == "service_healthy",
              f"{n}: starts once PostgreSQL is healthy")
        check(all(x in deps for x in sentinels), f"{n}: starts after the Sentinels")
        store = urlsplit(env["TSUNAGU_STORE__URL"])
        hosts = sorted(h.split(":")[0] for h in store.netloc.split(","))
        check(store.scheme == "redis+sentinel" and hosts == sentinels and store.path == f"/{master_name}",
              f"{n}: store URL names the Sentinels and master {master_name!r}")
        dburl = urlsplit(env["TSUNAGU_DATABASE__URL"])
        check(dburl.scheme == "postgres" and dburl.hostname in db, f"{n}: database URL names {db}")
        check(env.get("TSUNAGU_LIMITS__TRUSTED_PROXIES") == proxy_ip, f"{n}: trusts HAProxy's address only")
        check(set(s.get("networks", {})) == {"edge", "backend"}, f"{n}: on the edge and backend networks")
        check(s.get("ulimits", {}).get("nofile", {}).get("soft", 0) >= 65536, f"{n}: 65536 descriptors")

    # Secrets come from .env: in the file itself they are interpolations, never values.
    text = Path(a.compose).read_text()
    for key in ("TSUNAGU_ESCALATION__KEY", "POSTGRES_PASSWORD"):
        for m in re.finditer(rf"^\s*{key}:\s*(\S.*)$", text, re.M):
            check(m.group(1).startswith("${"), f"compose.yaml: {key} comes from .env")
    check(re.search(r"postgres://[^:]+:\$\{POSTGRES_PASSWORD", text) is not None,
          "compose.yaml: the database password in the URL comes from .env")

    print(f"compose.yaml: {len(passed)} checks passed, {len(failures)} failed")
    if failures:
        sys.exit(1)


if __name__ == "__main__":
    main()
