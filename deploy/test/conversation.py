"""A person and an operator hold a conversation through the TLS proxy (deploy/test.sh).

Checks, through the proxy: /healthz, the plain-HTTP redirect, the gateway's security headers
passed once and unchanged, sign-in (the __Host- cookie), and a whole conversation over wss:
offer, accept, messages both ways in order with nothing lost or doubled, end and wrap-up.
Prints one line of figures. Uses the `websockets` package (sync client).
"""

import argparse
import json
import os
import ssl
import sys
import time
import urllib.error
import urllib.request

from websockets.sync.client import connect

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
SECURITY_HEADERS = [
    "content-security-policy",
    "strict-transport-security",
    "x-content-type-options",
    "referrer-policy",
    "permissions-policy",
]
ROUNDS = 10


def ulid():
    """A client id: 48 bits of milliseconds, 80 random bits, 26 Crockford characters."""
    n = (int(time.time() * 1000) << 80) | int.from_bytes(os.urandom(10), "big")
    return "".join(CROCKFORD[(n >> (5 * i)) & 31] for i in reversed(range(26)))


def fail(msg):
    print(f"conversation.py: FAILED: {msg}", file=sys.stderr)
    sys.exit(1)


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def http(url, ctx, method="GET", body=None, headers=None):
    """(status, headers as a list of (name, value), body) without following redirects."""
    opener = urllib.request.build_opener(
        NoRedirect, urllib.request.HTTPSHandler(context=ctx)
    )
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with opener.open(req, timeout=10) as r:
            return r.status, r.headers.items(), r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.items(), e.read()


class Socket:
    """A websocket whose frames are kept, so a test can wait for one while others arrive."""

    def __init__(self, url, ctx, origin, cookie=None):
        headers = {"Cookie": cookie} if cookie else None
        self.ws = connect(url, ssl=ctx, origin=origin, additional_headers=headers, open_timeout=10)
        self.backlog = []

    def send(self, frame):
        self.ws.send(json.dumps(frame))

    def expect(self, what, pred, within=10.0):
        for i, v in enumerate(self.backlog):
            if pred(v):
                return self.backlog.pop(i)
        deadline = time.monotonic() + within
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                fail(f"timed out waiting for {what}; got {self.backlog}")
            try:
                v = json.loads(self.ws.recv(timeout=left))
            except TimeoutError:
                continue
            if pred(v):
                return v
            self.backlog.append(v)

    def request(self, frame):
        """Sends `frame` with a fresh id; returns its ack (an error fails the test)."""
        frame["id"] = ulid()
        self.send(frame)
        reply = self.expect(
            f"answer to {frame['type']}",
            lambda v: v["type"] in ("ack", "error") and v.get("id") == frame["id"],
        )
        if reply["type"] == "error":
            fail(f"{frame['type']} refused: {reply}")
        return reply


def sign_in(origin, ctx, username, password):
    """Signs in through `origin` as the console does (acknowledging the confidentiality pledge
    at a first sign-in) and returns the `__Host-` session cookie."""
    status, headers, body = http(
        f"{origin}/api/login",
        ctx,
        "POST",
        json.dumps({"username": username, "password": password}).encode(),
        {"Content-Type": "application/json", "Origin": origin},
    )
    if status != 200:
        fail(f"login of {username} answered {status}")
    answer = json.loads(body or b"{}")
    if answer.get("step") == "pledge":
        status, headers, body = http(
            f"{origin}/api/login/step",
            ctx,
            "POST",
            json.dumps({"pending": answer["pending"], "accept_pledge": True}).encode(),
            {"Content-Type": "application/json", "Origin": origin},
        )
        if status != 200:
            fail(f"the pledge step of {username} answered {status}")
    elif answer.get("step"):
        fail(f"sign-in of {username} asks for an unexpected step: {answer['step']}")
    cookies = [v.split(";")[0] for k, v in headers if k.lower() == "set-cookie"]
    cookie = next((c for c in cookies if c.startswith("__Host-tsunagu_session=")), None)
    if cookie is None:
        fail(f"no __Host- session cookie (cookie_secure behind the proxy): {cookies}")
    return cookie


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--proxy", required=True, help="https://host:port of the proxy")
    p.add_argument("--plain", required=True, help="http://host:port of the proxy's port 80")
    p.add_argument("--gateway", required=True, help="http://host:port of the gateway itself")
    p.add_argument("--ca", required=True)
    p.add_argument("--username", required=True)
    p.add_argument("--password-file", required=True)
    a = p.parse_args()
    ctx = ssl.create_default_context(cafile=a.ca)
    wss = a.proxy.replace("https://", "wss://")
    started = time.monotonic()

    status, _, body = http(f"{a.proxy}/healthz", ctx)
    if status != 200:
        fail(f"/healthz through the proxy answered {status}")

    status, headers, _ = http(f"{a.plain}/console/", ctx)
    location = dict((k.lower(), v) for k, v in headers).get("location", "")
    if status != 301 or not location.startswith("https://"):
        fail(f"plain HTTP answered {status} {location!r}, not a redirect to https")

    # The gateway's own headers arrive once and unchanged through the proxy.
    _, via_proxy, _ = http(f"{a.proxy}/console/", ctx)
    _, direct, _ = http(f"{a.gateway}/console/", None)
    for name in SECURITY_HEADERS:
        got = [v for k, v in via_proxy if k.lower() == name]
        want = [v for k, v in direct if k.lower() == name]
        if len(want) != 1 or got != want:
            fail(f"{name}: through the proxy {got}, from the gateway {want}")

    with open(a.password_file) as f:
        password = f.read().strip()
    cookie = sign_in(a.proxy, ctx, a.username, password)

    operator = Socket(f"{wss}/ws/operator", ctx, a.proxy, cookie)
    operator.send({"type": "hello", "v": 1, "id": ulid()})
    operator.expect("operator welcome", lambda v: v["type"] == "welcome")
    operator.request({"type": "presence", "state": "on_duty"})

    visitor = Socket(f"{wss}/ws/visitor", ctx, a.proxy)
    visitor.send({"type": "hello", "v": 1, "id": ulid(), "start": {"lang": "ja"}})
    welcome = visitor.expect("visitor welcome", lambda v: v["type"] == "welcome")
    conversation = welcome["conversation"]

    operator.expect("offer", lambda v: v["type"] == "offer" and v["conversation"] == conversation)
    operator.request({"type": "accept", "conversation": conversation})
    visitor.expect(
        "operator_joined",
        lambda v: v["type"] == "event" and v["event"]["kind"] == "operator_joined",
    )

    def is_message(v):
        return v["type"] == "event" and v["event"]["kind"] == "message"

    sent, seen_by_visitor, seen_by_operator = [], [], []
    for i in range(ROUNDS):
        ack = visitor.request({"type": "send", "text": f"visitor message {i}"})
        sent.append(ack["seq"])
        ack = operator.request(
            {"type": "send", "conversation": conversation, "text": f"operator answer {i}"}
        )
        sent.append(ack["seq"])
    while len(seen_by_visitor) < len(sent):
        seen_by_visitor.append(visitor.expect("a message", is_message))
    while len(seen_by_operator) < len(sent):
        seen_by_operator.append(operator.expect("a message", is_message))
    for who, seen in (("person", seen_by_visitor), ("operator", seen_by_operator)):
        seqs = [v["seq"] for v in seen]
        if seqs != sent:
            fail(f"the {who} saw seqs {seqs}, acknowledged {sent}")
        texts = [v["event"]["text"] for v in seen]
        want = [t for i in range(ROUNDS) for t in (f"visitor message {i}", f"operator answer {i}")]
        if texts != want:
            fail(f"the {who} saw the messages out of order or changed")

    operator.request({"type": "end", "conversation": conversation})
    visitor.expect("ended", lambda v: v["type"] == "event" and v["event"]["kind"] == "ended")
    operator.request({"type": "wrap_up", "conversation": conversation, "category": "other"})
    operator.expect(
        "removed", lambda v: v["type"] == "removed" and v["conversation"] == conversation
    )
    operator.ws.close()
    visitor.ws.close()
    print(
        f"conversation through the proxy over TLS: {len(sent)} messages ({ROUNDS} each way), "
        f"each seen once and in order by both sides, ended and wrapped up, "
        f"security headers passed unchanged, in {time.monotonic() - started:.1f} s"
    )


if __name__ == "__main__":
    main()
