#!/usr/bin/env python3
"""Memory under a login burst (issue 17, item 3): the gateway's RSS before, at peak and after
N simultaneous logins, each from its own client address (X-Forwarded-For from a trusted proxy).

    cargo build --release -p gateway
    python3 scripts/login-burst.py target/release/gateway [N]

Starts the binary on a free loopback port with a fresh accounts file (one operator, added with
`gateway user add`), waits for it, sends N logins with the right password released together by a
barrier, and prints the status counts and VmRSS / VmHWM from /proc (Linux only).
"""

import collections
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

PASSWORD = "burst password 1234"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def memory(pid):
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(value.split()[0]) / 1024
    return fields


def main():
    binary = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 120
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    tmp = tempfile.mkdtemp(prefix="tsunagu-burst-")
    env = dict(
        os.environ,
        TSUNAGU_DATABASE__SQLITE_PATH=os.path.join(tmp, "tsunagu.db"),
        TSUNAGU_SERVER__PORT=str(port),
        TSUNAGU_LOG__FILTER="warn",
        TSUNAGU_LIMITS__TRUSTED_PROXIES="127.0.0.1",
        TSUNAGU_LIMITS__LOGINS_PER_MINUTE="100000",
        TSUNAGU_LIMITS__LOGIN_BURST="100000",
        # The burst measures password checks: no pledge step after them.
        TSUNAGU_AUTH__REQUIRE_PLEDGE="false",
    )
    subprocess.run(
        [binary, "user", "add", "--username", "burst", "--display-name", "Burst",
         "--role", "operator", "--password-stdin"],
        input=PASSWORD + "\n", text=True, env=env, check=True, stdout=subprocess.DEVNULL,
    )
    gw = subprocess.Popen([binary], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(base + "/healthz", timeout=1).read()
                break
            except OSError:
                time.sleep(0.05)
        time.sleep(0.5)
        before = memory(gw.pid)
        barrier = threading.Barrier(n)
        statuses = collections.Counter()
        lock = threading.Lock()

        def login(i):
            body = json.dumps({"username": "burst", "password": PASSWORD}).encode()
            req = urllib.request.Request(
                base + "/api/login", data=body, method="POST",
                headers={"content-type": "application/json", "origin": base,
                         "x-forwarded-for": f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}"},
            )
            barrier.wait()
            try:
                status = urllib.request.urlopen(req, timeout=120).status
            except urllib.error.HTTPError as e:
                status = e.code
            except OSError:
                status = "error"
            with lock:
                statuses[status] += 1

        threads = [threading.Thread(target=login, args=(i,)) for i in range(n)]
        started = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        took = time.monotonic() - started
        time.sleep(1)
        after = memory(gw.pid)
        print(json.dumps({
            "binary": binary, "logins": n, "statuses": dict(statuses), "seconds": round(took, 2),
            "rss_before_mib": round(before["VmRSS"], 1),
            "rss_peak_mib": round(after["VmHWM"], 1),
            "rss_after_mib": round(after["VmRSS"], 1),
        }))
    finally:
        gw.terminate()
        gw.wait()


if __name__ == "__main__":
    main()
