"""Hosts for deploy/test/multinode.py: one network namespace per host, made here and removed here.

Every host ("lb", "gw1", ...) is a namespace of its own with one veth, `eth0`, whose peer sits on
a bridge in one more namespace (the LAN); the test itself, in the machine's namespace, reaches
the LAN over one more veth pair, as a person on the internet reaches the load balancer. The
addresses are one /24 of 10.253.0.0/16 on those veths only: nothing routes beyond them. Names
carry the test's process id, so two runs never collide.

`Topology.close()` undoes everything, also after a failure: the processes (SIGTERM, then
SIGKILL), anything else still in a namespace, the namespaces (which takes their veths with them)
and the machine's own end of the LAN link.
"""

import os
import signal
import subprocess
import time


class Refused(Exception):
    """The kernel (or the container around us) does not let us make namespaces."""


def run(*args, check=True, **kwargs):
    r = subprocess.run(args, capture_output=True, text=True, **kwargs)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {r.stderr.strip() or r.stdout.strip()}")
    return r


def _free_subnet():
    """A 10.253.N.0/24 that no interface of the machine uses yet."""
    used = run("ip", "-4", "-o", "addr", "show").stdout
    start = os.getpid() % 250
    for k in range(250):
        n = (start + k) % 250
        if f" 10.253.{n}." not in used:
            return f"10.253.{n}"
    raise RuntimeError("no free 10.253.N.0/24")


class Topology:
    def __init__(self, hosts):
        """`hosts`: names in the order their addresses are given (.10, .11, ...)."""
        self.tag = f"tsmn{os.getpid()}"
        self.net = _free_subnet()
        self.client_addr = f"{self.net}.1"
        self.addr = {h: f"{self.net}.{10 + i}" for i, h in enumerate(hosts)}
        self.namespaces = []
        self.procs = []  # (name, Popen)
        self.root_if = self.tag  # at most 15 characters: "tsmn" and a pid
        self.lan = f"{self.tag}-lan"
        try:
            run("ip", "netns", "add", self.lan)
        except RuntimeError as e:
            raise Refused(str(e)) from e
        self.namespaces.append(self.lan)
        try:
            self._links(hosts)
        except BaseException:
            self.close()
            raise

    def _links(self, hosts):
        run("ip", "-n", self.lan, "link", "set", "lo", "up")
        run("ip", "-n", self.lan, "link", "add", "br0", "type", "bridge")
        run("ip", "-n", self.lan, "link", "set", "br0", "up")
        for h in hosts:
            ns = self.ns(h)
            run("ip", "netns", "add", ns)
            self.namespaces.append(ns)
            run("ip", "-n", ns, "link", "set", "lo", "up")
            run("ip", "-n", self.lan, "link", "add", h, "type", "veth", "peer", "name", "eth0",
                "netns", ns)
            run("ip", "-n", self.lan, "link", "set", h, "master", "br0", "up")
            run("ip", "-n", ns, "addr", "add", f"{self.addr[h]}/24", "dev", "eth0")
            run("ip", "-n", ns, "link", "set", "eth0", "up")
        run("ip", "link", "add", self.root_if, "type", "veth", "peer", "name", "outside",
            "netns", self.lan)
        run("ip", "-n", self.lan, "link", "set", "outside", "master", "br0", "up")
        run("ip", "addr", "add", f"{self.client_addr}/24", "dev", self.root_if)
        run("ip", "link", "set", self.root_if, "up")

    def ns(self, host):
        return f"{self.tag}-{host}"

    def start(self, name, host, argv, env=None, cwd=None, log=None):
        """Runs `argv` in `host`'s namespace (`ip netns exec` execs it: same pid)."""
        out = open(log, "ab") if log else subprocess.DEVNULL
        p = subprocess.Popen(
            ["ip", "netns", "exec", self.ns(host), *argv],
            env={**os.environ, **(env or {})},
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        if log:
            out.close()
        self.procs.append((name, p))
        return p

    def exec(self, host, *argv, **kwargs):
        return run("ip", "netns", "exec", self.ns(host), *argv, **kwargs)

    def close(self):
        for _, p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 5
        for _, p in self.procs:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        # Whatever else runs in our namespaces (PostgreSQL's postmaster, started by pg_ctl).
        for ns in self.namespaces:
            pids = run("ip", "netns", "pids", ns, check=False).stdout.split()
            for pid in pids:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
        for ns in reversed(self.namespaces):
            run("ip", "netns", "del", ns, check=False)
        run("ip", "link", "del", self.root_if, check=False)
        self.namespaces = []
        left = [n for n in run("ip", "netns", "list").stdout.split() if n.startswith(self.tag)]
        if left:
            raise RuntimeError(f"namespaces left behind: {left}")
