"""Several gateway nodes behind deploy/haproxy/haproxy.cfg, restarted one at a time under a live
conversation (deploy/test.sh, step 5).

The hosts are network namespaces made here (topology.py): `lb` runs Debian's HAProxy with the
shipped haproxy.cfg, unchanged (its placeholders are environment variables); `gw1`..`gw3` the
gateway's release build with the Redis store through Sentinel (`WAIT_REPLICAS=1`) and one
PostgreSQL database; `redis1` the Redis primary and a sentinel, `redis2` a replica and a
sentinel, `db` PostgreSQL and the third sentinel. The test itself stands outside, on the
internet side of the load balancer, and reaches it over TLS with a certificate made here.

1. conversation.py through HAProxy (health, the redirect, the gateway's headers unchanged,
   sign-in, a whole conversation).
2. Four people and two operators (resuming.py) converse, both sides sending numbered messages;
   meanwhile each gateway in turn gets SIGTERM, is waited for and started again, and the next
   waits until HAProxy has it up again: what an orchestrator does in a rolling upgrade. HAProxy's
   view (stats socket, `show stat`) is read every 50 ms: the draining node must be taken out on
   its /readyz answer (Layer 7, 503) before it closes its sockets.
3. Every conversation's log as each side received it: every message acknowledged to its sender
   arrived exactly once, in order, with its text and id, on both sides; the logs have no gap.
   Every restart moved someone; nobody took more than MAX_MOVE_S to be welcomed back.

Prints the figures. Exits 0 with a SKIP line when the kernel refuses network namespaces.
Cleans up everything (topology.Topology.close), also on failure, SIGINT and SIGTERM.
"""

import argparse
import csv
import io
import os
import resource
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.dont_write_bytecode = True  # nothing written into the repository by the imports below

from conversation import sign_in  # noqa: E402
from resuming import Broken, Operator, Person  # noqa: E402
from topology import Refused, Topology  # noqa: E402

HOSTS = ["lb", "gw1", "gw2", "gw3", "redis1", "redis2", "db"]
GATEWAYS = ["gw1", "gw2", "gw3"]
PEOPLE = 4
OPERATORS = 2
# A person sends every second (the widget's default allowance is 60 a minute, burst 20);
# an operator every half second, round the conversations held (240 a minute).
PERSON_INTERVAL = 1.0
OPERATOR_INTERVAL = 0.5
# The most a person or operator may wait to be welcomed back on another node.
MAX_MOVE_S = 10.0
# On SIGTERM a node stays unready for this long before closing its sockets (the checks in
# haproxy.cfg take it out within 1.5 s).
SHUTDOWN_DELAY_MS = 3000
PASSWORD = "multinode smoke password"


def log(msg):
    print(f"multinode: {msg}", flush=True)


class Failed(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Failed(msg)


def wait_for(what, pred, within):
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if pred():
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise Failed(f"{what}: not within {within} s")


def get_status(url):
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


class Stack:
    """The processes of every host, started in order; `gateway(i)` starts node i (again)."""

    def __init__(self, topo, work, gateway_bin, repo):
        self.topo, self.work, self.bin, self.repo = topo, work, gateway_bin, repo
        self.a = topo.addr
        self.nodes = {}

    def tls(self):
        lb = self.a["lb"]
        key, crt, self.ca = (os.path.join(self.work, f) for f in ("key.pem", "crt.pem", "ca.pem"))
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-days", "2", "-subj", "/CN=tsunagu-test",
             "-addext", f"subjectAltName=IP:{lb},DNS:localhost", "-keyout", key, "-out", crt],
            check=True, capture_output=True)
        shutil.copy(crt, self.ca)
        self.pem = os.path.join(self.work, "tsunagu.pem")
        with open(self.pem, "w") as out:
            out.write(open(crt).read() + open(key).read())
        os.chmod(self.pem, 0o600)

    def postgres(self):
        """Debian's PostgreSQL as `nobody`, password sign-in from the LAN only."""
        d = os.path.join(self.work, "pg")
        os.mkdir(d, 0o700)
        shutil.chown(d, "nobody", "nogroup")
        pw = os.path.join(d, "pw")
        with open(pw, "w") as f:
            f.write(PASSWORD + "\n")
        shutil.chown(pw, "nobody", "nogroup")
        pg_bin = sorted(
            (int(v), f"/usr/lib/postgresql/{v}/bin") for v in os.listdir("/usr/lib/postgresql")
            if v.isdigit())[-1][1]
        as_pg = ["runuser", "-u", "nobody", "--"]
        subprocess.run([*as_pg, f"{pg_bin}/initdb", "-D", f"{d}/data", "-U", "tsunagu",
                        f"--pwfile={pw}", "--auth-local=trust", "--auth-host=scram-sha-256",
                        "-E", "UTF8", "--no-sync"], check=True, capture_output=True)
        with open(f"{d}/data/pg_hba.conf", "a") as f:
            f.write(f"host all tsunagu {self.topo.net}.0/24 scram-sha-256\n")
        opts = (f"-c listen_addresses={self.a['db']} -p 5432 -k {d} -c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off")
        self.topo.exec("db", *as_pg, f"{pg_bin}/pg_ctl", "-D", f"{d}/data", "-l", f"{d}/log",
                       "-o", opts, "-w", "-t", "60", "start")
        subprocess.run([*as_pg, f"{pg_bin}/createdb", "-h", d, "-p", "5432", "-U", "tsunagu",
                        "tsunagu"], check=True, capture_output=True)
        self.pg_stop = [*as_pg, f"{pg_bin}/pg_ctl", "-D", f"{d}/data", "-m", "immediate", "stop"]
        self.database_url = f"postgres://tsunagu:{PASSWORD.replace(' ', '%20')}@{self.a['db']}:5432/tsunagu"

    def redis(self):
        """A primary, a replica, and three sentinels (on redis1, redis2 and db)."""
        for host, extra in (("redis1", []), ("redis2", ["--replicaof", self.a["redis1"], "6379"])):
            d = os.path.join(self.work, host)
            os.mkdir(d)
            self.topo.start(host, host, ["redis-server", "--bind", self.a[host], "--port", "6379",
                                         "--protected-mode", "no", "--save", "", "--appendonly",
                                         "no", "--dir", d, *extra], log=f"{d}/redis.log")
        wait_for("the replica in sync", lambda: "master_link_status:up" in subprocess.run(
            ["redis-cli", "-h", self.a["redis2"], "info", "replication"],
            capture_output=True, text=True).stdout, 20)
        for host in ("redis1", "redis2", "db"):
            conf = os.path.join(self.work, f"sentinel-{host}.conf")
            with open(conf, "w") as f:
                f.write(f"port 26379\nbind {self.a[host]}\nprotected-mode no\ndir {self.work}\n"
                        f"sentinel monitor mymaster {self.a['redis1']} 6379 2\n"
                        "sentinel down-after-milliseconds mymaster 5000\n"
                        "sentinel failover-timeout mymaster 10000\n")
            self.topo.start(f"sentinel-{host}", host, ["redis-server", conf, "--sentinel"],
                            log=f"{conf}.log")
        for host in ("redis1", "redis2", "db"):
            wait_for(f"sentinel on {host}", lambda h=host: self.a["redis1"] in subprocess.run(
                ["redis-cli", "-h", self.a[h], "-p", "26379", "sentinel",
                 "get-master-addr-by-name", "mymaster"], capture_output=True, text=True).stdout, 20)
        sentinels = ",".join(f"{self.a[h]}:26379" for h in ("redis1", "redis2", "db"))
        self.store_url = f"redis+sentinel://{sentinels}/mymaster"

    def env(self):
        return {
            "TSUNAGU_SERVER__HOST": "0.0.0.0",
            "TSUNAGU_SERVER__PORT": "8080",
            "TSUNAGU_SERVER__PUBLIC_URL": f"https://{self.a['lb']}",
            "TSUNAGU_SERVER__SHUTDOWN_DELAY_MS": str(SHUTDOWN_DELAY_MS),
            "TSUNAGU_AUTH__COOKIE_SECURE": "true",
            "TSUNAGU_LIMITS__TRUSTED_PROXIES": self.a["lb"],
            "TSUNAGU_STORE__URL": self.store_url,
            "TSUNAGU_STORE__WAIT_REPLICAS": "1",
            "TSUNAGU_DATABASE__URL": self.database_url,
            "TSUNAGU_LOG__FORMAT": "json",
            "TSUNAGU_LOG__FILTER": "info",
        }

    def add_operator(self, name):
        subprocess.run(
            ["ip", "netns", "exec", self.topo.ns("gw1"), self.bin, "user", "add", "--username",
             name, "--display-name", name, "--role", "operator", "--capacity", "2",
             "--languages", "ja,en", "--password-stdin"],
            input=PASSWORD + "\n", text=True, check=True, capture_output=True,
            env={**os.environ, **self.env()})

    def gateway(self, host):
        d = os.path.join(self.work, host)
        os.makedirs(d, exist_ok=True)
        self.nodes[host] = self.topo.start(host, host, [self.bin, "serve"], env=self.env(), cwd=d,
                                           log=os.path.join(d, "gateway.log"))

    def haproxy(self):
        self.stats = os.path.join(self.work, "haproxy.sock")
        env = {f"GATEWAY_{i + 1}": f"{self.a[g]}:8080" for i, g in enumerate(GATEWAYS)}
        env.update(TSUNAGU_TLS_PEM=self.pem, HAPROXY_STATS_SOCKET=self.stats)
        # The shipped maxconn needs about 120,000 descriptors; a container may allow fewer.
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        if hard != resource.RLIM_INFINITY and hard < 121_000:
            # Two descriptors a proxied connection, and some for listeners, checks and logs.
            env["HAPROXY_MAXCONN"] = str(max(64, (hard - 256) // 2))
            log(f"HAPROXY_MAXCONN={env['HAPROXY_MAXCONN']} (descriptors limited to {hard} here)")
        cfg = os.path.join(self.repo, "deploy/haproxy/haproxy.cfg")
        self.topo.exec("lb", "haproxy", "-c", "-q", "-f", cfg, env={**os.environ, **env})
        self.haproxy_log = os.path.join(self.work, "haproxy.log")
        self.topo.start("haproxy", "lb", ["haproxy", "-db", "-f", cfg], env=env,
                        log=self.haproxy_log)

    def servers(self):
        """HAProxy's view: server -> (status, check status, check code)."""
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(2)
        s.connect(self.stats)
        s.sendall(b"show stat\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
        s.close()
        rows = csv.DictReader(io.StringIO(data.decode().lstrip("# ")))
        return {r["svname"]: (r["status"], r["check_status"], r["check_code"])
                for r in rows if r["pxname"] == "gateways" and r["svname"] in GATEWAYS}


def rolling_restart(stack):
    """SIGTERM each node, wait for its exit, start it again, wait until HAProxy has it UP."""
    restarts = []
    for host in GATEWAYS:
        proc = stack.nodes[host]
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out_at, out_why, states = None, None, []
        while proc.poll() is None:
            status, chk, code = stack.servers()[host]
            if out_at is None and status.startswith("DOWN"):
                out_at, out_why = time.monotonic(), f"{chk} {code}".strip()
            states.append(status)
            check(time.monotonic() - t0 < 30, f"{host} still running 30 s after SIGTERM")
            time.sleep(0.05)
        exited = time.monotonic()
        check(proc.returncode == 0, f"{host} exited with {proc.returncode} after SIGTERM")
        check(out_at is not None,
              f"{host}: HAProxy did not take it out while it drained (states {sorted(set(states))})")
        check(out_why.startswith("L7STS") and out_why.endswith("503"),
              f"{host}: HAProxy took it out for {out_why!r}, not its /readyz answer 503")
        stack.gateway(host)
        started = time.monotonic()
        wait_for(f"HAProxy to have {host} up again",
                 lambda: stack.servers()[host][0] == "UP", 30)
        up = time.monotonic()
        restarts.append(dict(host=host, term=t0, out_at=out_at, out=out_at - t0, why=out_why,
                             exit=exited - t0,
                             started=started, up=up, back=up - started))
        log(f"{host}: SIGTERM; out of HAProxy after {out_at - t0:.2f} s ({out_why}), exited "
            f"after {exited - t0:.2f} s; started again, UP in HAProxy {up - started:.2f} s later")
        time.sleep(1.0)
    return restarts


def verify(people, operators):
    """Every conversation, as each side saw it. Returns the number of messages checked."""
    checked = 0
    holder = {c: op for op in operators for c in op.held}
    for p in people:
        c = p.conversation
        op = holder.get(c)
        check(op is not None, f"{p.name}: no operator holds its conversation")
        sent = sorted(p.acked.get(c, []) + op.acked.get(c, []))
        check(len({s for s, _, _ in sent}) == len(sent), f"{c}: two messages acknowledged at one seq")
        for who, seen in ((p.name, p.seen[c]), (op.name, op.seen[c])):
            seqs = [s for s, _ in seen]
            check(seqs == list(range(1, len(seqs) + 1)),
                  f"{who} saw {c}'s log with a gap, twice or out of order: {seqs}")
            by_seq = dict(seen)
            messages = sorted(s for s, e in seen if e["kind"] == "message")
            check(messages == [s for s, _, _ in sent],
                  f"{who}: messages in the log {messages} != acknowledged {[s for s, _, _ in sent]}")
            for seq, text, cid in sent:
                e = by_seq[seq]
                check(e.get("text") == text and e.get("id") == cid,
                      f"{who}: seq {seq} holds {e}, sent {text!r} {cid}")
        # Each sender's messages in the log in the order they were sent.
        for sender, mine in ((p.name, p.acked[c]), (op.name, op.acked[c])):
            numbers = [int(t.rsplit("#", 1)[1]) for _, t, _ in sorted(mine)]
            check(numbers == sorted(numbers) and len(set(numbers)) == len(numbers),
                  f"{sender}: its messages in {c} out of order: {numbers}")
        checked += len(sent)
    return checked


def converse(stack, args):
    a = stack.a
    base, origin = f"wss://{a['lb']}", f"https://{a['lb']}"
    ctx = ssl.create_default_context(cafile=stack.ca)
    operators = []
    for i in range(OPERATORS):
        name = f"op{i + 1}"
        cookie = sign_in(origin, ctx, name, PASSWORD)
        op = Operator(name, base, ctx, origin, OPERATOR_INTERVAL, cookie=cookie, capacity=2)
        op.first_open()
        op.start()
        op.request({"type": "presence", "state": "on_duty"})
        operators.append(op)
    people = []
    for i in range(PEOPLE):
        p = Person(f"person{i + 1}", base, ctx, origin, PERSON_INTERVAL)
        p.first_open()
        p.start()
        people.append(p)
    for p in people:
        check(p.joined.wait(20), f"{p.name}: no operator joined within 20 s")
    log(f"{PEOPLE} people and {OPERATORS} operators in conversation through HAProxy over TLS")
    for peer in people + operators:
        peer.sending.set()
    time.sleep(3)
    restarts = rolling_restart(stack)
    time.sleep(3)
    for peer in people + operators:
        peer.sending.clear()
    # Everything acknowledged reaches both sides.
    holder = {c: op for op in operators for c in op.held}

    def delivered():
        for p in people:
            c, op = p.conversation, holder[p.conversation]
            if p.pending is not None or op.pending is not None:
                return False
            last = max(s for s, _, _ in p.acked.get(c, []) + op.acked.get(c, []))
            if p.last_seq(c) < last or op.last_seq(c) < last:
                return False
        return True

    wait_for("the last messages on both sides", delivered, 20)
    for op in operators:
        for c in list(op.held):
            op.request({"type": "end", "conversation": c})
            op.request({"type": "wrap_up", "conversation": c, "category": "other"})
    for p in people:
        check(p.ended.wait(10), f"{p.name}: no `ended` after the operator ended")
    for peer in people + operators:
        peer.done()
    return people, operators, restarts


def report(people, operators, restarts, checked, started):
    moves = [(peer.name, closed, code, back - closed)
             for peer in people + operators for closed, code, back in peer.moves]
    for r in restarts:
        mine = [m for m in moves if r["term"] <= m[1] <= r["up"]]
        check(mine, f"{r['host']}: its restart moved nobody (the test did not exercise it)")
        first = min(closed for _, closed, _, _ in mine)
        check(r["out_at"] < first, f"{r['host']}: its sockets closed {r['out_at'] - first:.2f} s "
              "before HAProxy took it out")
        names = [n for n, _, _, _ in mine]
        check(len(names) == len(set(names)),
              f"{r['host']}: someone moved twice (sent back to the node going away): {names}")
        times = ", ".join(f"{n} {t:.2f} s (close {c})" for n, _, c, t in sorted(mine))
        log(f"restart of {r['host']}: {len(mine)} moved: {times}")
    longest = max(t for _, _, _, t in moves)
    check(longest < MAX_MOVE_S, f"someone waited {longest:.1f} s to be welcomed back")
    pauses = []
    for peer in people + operators:
        ts = peer.ack_times
        pauses.append(max(b - a for a, b in zip(ts, ts[1:])))
    log(f"checked {checked} messages ({sum(len(v) for p in people for v in p.acked.values())} "
        f"from people, {sum(len(v) for o in operators for v in o.acked.values())} from operators): "
        "each acknowledged message seen exactly once and in order by both sides, no gap in any log")
    log(f"{len(moves)} reconnects in {len(restarts)} restarts; longest wait to be welcomed back "
        f"{longest:.2f} s; longest pause between a peer's acknowledgements {max(pauses):.2f} s")
    log("HAProxy took each draining node out after "
        + ", ".join(f"{r['out']:.2f} s" for r in restarts)
        + " on /readyz (" + ", ".join(sorted({r['why'] for r in restarts})) + "), before it "
        "closed its sockets (exits after " + ", ".join(f"{r['exit']:.2f} s" for r in restarts)
        + "); restarted nodes UP after " + ", ".join(f"{r['back']:.2f} s" for r in restarts))
    tries = [(peer.name, t, why) for peer in people + operators for t, why in peer.first_tries]
    if tries:
        log("first handshakes tried again: " + "; ".join(f"{n} after {t:.2f} s ({why})"
                                                       for n, t, why in tries))
    log(f"passed in {time.monotonic() - started:.1f} s")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gateway-bin", required=True)
    a = ap.parse_args()
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    started = time.monotonic()

    def stop(signum, _frame):
        raise SystemExit(f"multinode: stopped by signal {signum}")

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    work = tempfile.mkdtemp(prefix="tsunagu-multinode-", dir="/tmp")
    os.chmod(work, 0o755)  # PostgreSQL runs as nobody below it
    topo = stack = None
    ok = False
    try:
        try:
            topo = Topology(HOSTS)
        except Refused as e:
            print(f"SKIP multinode: the kernel refuses network namespaces ({e})", flush=True)
            ok = True
            return
        stack = Stack(topo, work, a.gateway_bin, repo)
        stack.tls()
        stack.postgres()
        stack.redis()
        for i in range(OPERATORS):
            stack.add_operator(f"op{i + 1}")
        for g in GATEWAYS:
            stack.gateway(g)
        for g in GATEWAYS:
            wait_for(f"{g}'s /readyz", lambda g=g: get_status(f"http://{stack.a[g]}:8080/readyz") == 200, 60)
        stack.haproxy()
        wait_for("HAProxy with every node UP", lambda: all(
            s[0] == "UP" for s in stack.servers().values()) and len(stack.servers()) == 3, 30)
        log(f"hosts up in {time.monotonic() - started:.1f} s: HAProxy at {stack.a['lb']}, "
            f"gateways {', '.join(stack.a[g] for g in GATEWAYS)}, Redis primary, replica and 3 "
            "sentinels, PostgreSQL")
        pw = os.path.join(work, "password")
        with open(pw, "w") as f:
            f.write(PASSWORD)
        subprocess.run([sys.executable, os.path.join(repo, "deploy/test/conversation.py"),
                        "--proxy", f"https://{stack.a['lb']}", "--plain", f"http://{stack.a['lb']}",
                        "--gateway", f"http://{stack.a['gw1']}:8080", "--ca", stack.ca,
                        "--username", "op1", "--password-file", pw], check=True, timeout=60)
        people, operators, restarts = converse(stack, a)
        checked = verify(people, operators)
        report(people, operators, restarts, checked, started)
        ok = True
    except (Failed, Broken, OSError, TimeoutError, subprocess.CalledProcessError,
            subprocess.TimeoutExpired) as e:
        print(f"multinode: FAILED: {e}", file=sys.stderr, flush=True)
        if getattr(e, "stderr", None):
            print(e.stderr, file=sys.stderr)
    finally:
        if not ok and stack is not None:
            for name in ["haproxy.log", *(f"{g}/gateway.log" for g in GATEWAYS)]:
                path = os.path.join(work, name)
                if os.path.exists(path):
                    tail = open(path, errors="replace").read().splitlines()[-40:]
                    print(f"--- {name}\n" + "\n".join(tail), file=sys.stderr)
        if stack is not None and hasattr(stack, "pg_stop"):
            subprocess.run(stack.pg_stop, capture_output=True)
        if topo is not None:
            topo.close()
        shutil.rmtree(work, ignore_errors=True)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
