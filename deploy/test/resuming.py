"""People and operators who keep talking across reconnects (deploy/test/multinode.py).

Each is one thread with one websocket at a time, as the widget and the console hold: it sends a
numbered message, waits for its `ack` before the next (a message counts as sent once
acknowledged), acknowledges what it receives, and when its socket closes (1001 from a node that
shuts down, or any error) it connects again through the load balancer at once and resumes: a
person with `resume.token` and the last `seq` it holds, an operator with `hello.last_seqs`;
the message in flight is sent again with the same client id. It keeps every log entry it was
given, in arrival order, and every move: when the socket closed, with which code, and when the
next `welcome` came. Nothing is deduplicated here: the checks must see what the server sent.
"""

import json
import threading
import time

from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from conversation import ulid

# The widget and the console give up on a node after this long without a welcome.
OPEN_TIMEOUT = 5.0
# How long a peer keeps trying to come back before the test fails.
GIVE_UP = 30.0


class Broken(Exception):
    pass


class Peer(threading.Thread):
    path = ""

    def __init__(self, name, base, ctx, origin, interval, cookie=None):
        super().__init__(name=name, daemon=True)
        self.base, self.ctx, self.origin, self.cookie = base, ctx, origin, cookie
        self.interval = interval
        self.ws = None
        self.seen = {}  # conversation -> [(seq, entry)] in arrival order
        self.acked = {}  # conversation -> [(seq, text, client id)] in the order sent
        self.moves = []  # (closed at, close code, welcome again at)
        self.first_tries = []  # (seconds after the first try, why) of failed first handshakes
        self.ack_times = []
        self.pending = None  # (conversation, frame) sent and not yet acknowledged
        self.counter = 0
        self.sending = threading.Event()
        self.stop = threading.Event()
        self.error = None
        self.lock = threading.Lock()

    # --- the socket -------------------------------------------------------------------------
    def open(self):
        """Connects and says hello; returns the welcome (frames before it are handled)."""
        headers = {"Cookie": self.cookie} if self.cookie else None
        self.ws = None
        self.ws = connect(f"{self.base}{self.path}", ssl=self.ctx, origin=self.origin,
                          additional_headers=headers, open_timeout=OPEN_TIMEOUT,
                          close_timeout=1)
        self.ws.send(json.dumps(self.hello()))
        deadline = time.monotonic() + OPEN_TIMEOUT
        while True:
            frame = json.loads(self.ws.recv(timeout=max(0.01, deadline - time.monotonic())))
            if frame["type"] == "welcome":
                self.welcomed(frame)
                return frame
            if frame["type"] == "error":
                raise Broken(f"{self.name}: hello refused: {frame}")
            self.handle(frame)

    def first_open(self):
        """Opens the first socket, trying again as the widget and the console do when the
        websocket handshake itself fails (before any `hello` is sent, so nothing is left behind
        on a node); every such try is kept in `first_tries` and reported."""
        started = time.monotonic()
        while True:
            try:
                return self.open()
            except (OSError, TimeoutError, InvalidStatus) as e:
                if self.ws is not None:  # the hello was sent: the failure is not the handshake's
                    raise
                self.first_tries.append((time.monotonic() - started, repr(e)))
                if time.monotonic() - started > GIVE_UP:
                    raise Broken(f"{self.name}: no first connection within {GIVE_UP} s: {e!r}")
                time.sleep(0.1)

    def reconnect(self, code):
        closed = time.monotonic()
        try:
            self.ws.close()
        except Exception:
            pass
        while True:
            try:
                self.open()
                back = time.monotonic()
                if self.pending is not None:
                    self.ws.send(json.dumps(self.pending[1]))
                break
            except (OSError, TimeoutError, InvalidStatus, ConnectionClosed) as e:
                if time.monotonic() - closed > GIVE_UP:
                    raise Broken(f"{self.name}: no way back after {GIVE_UP} s: {e!r}")
                time.sleep(0.1)
        with self.lock:
            self.moves.append((closed, code, back))

    def send(self, frame):
        try:
            self.ws.send(json.dumps(frame))
        except ConnectionClosed as e:
            self.reconnect(e.rcvd.code if e.rcvd else None)

    # --- the loop -----------------------------------------------------------------------------
    def run(self):
        try:
            next_send = time.monotonic()
            while not (self.stop.is_set() and self.pending is None):
                now = time.monotonic()
                if self.pending is None and self.sending.is_set() and now >= next_send:
                    frame = self.next_message()
                    if frame is not None:
                        self.pending = frame
                        self.send(frame[1])
                        next_send = now + self.interval
                try:
                    raw = self.ws.recv(timeout=0.05)
                except TimeoutError:
                    continue
                except ConnectionClosed as e:
                    if self.finished():
                        break
                    self.reconnect(e.rcvd.code if e.rcvd else None)
                    continue
                self.on_frame(json.loads(raw))
        except Exception as e:  # reported by the main thread
            self.error = e

    def on_frame(self, frame):
        pending = self.pending
        if pending and frame.get("id") == pending[1]["id"] and frame["type"] in ("ack", "error"):
            if frame["type"] == "ack":
                conversation, sent = pending
                with self.lock:
                    self.acked.setdefault(conversation, []).append(
                        (frame["seq"], sent["text"], sent["id"]))
                    self.ack_times.append(time.monotonic())
                self.pending = None
            elif frame["code"] in ("unavailable", "rate_limited"):
                time.sleep(frame.get("retry_after_ms", 200) / 1000)
                self.send(pending[1])
            else:
                raise Broken(f"{self.name}: send refused: {frame}")
            return
        self.handle(frame)

    def record(self, frame):
        conversation = frame["conversation"]
        with self.lock:
            self.seen.setdefault(conversation, []).append((frame["seq"], frame["event"]))

    def finished(self):
        return False

    def last_seq(self, conversation):
        entries = self.seen.get(conversation)
        return max(s for s, _ in entries) if entries else 0

    def done(self):
        self.stop.set()
        self.join(GIVE_UP)
        if self.is_alive():
            raise Broken(f"{self.name}: still waiting for an ack after {GIVE_UP} s")
        if self.error:
            raise self.error


class Person(Peer):
    path = "/ws/visitor"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.conversation = None
        self.token = None
        self.joined = threading.Event()
        self.ended = threading.Event()

    def hello(self):
        if self.token is None:
            return {"type": "hello", "v": 1, "id": ulid(), "start": {"lang": "ja"}}
        return {"type": "hello", "v": 1, "id": ulid(),
                "resume": {"token": self.token, "last_seq": self.last_seq(self.conversation)}}

    def welcomed(self, frame):
        self.conversation, self.token = frame["conversation"], frame["token"]

    def finished(self):
        # After `ended` the server closes with 1000 and the token opens nothing more.
        return self.ended.is_set()

    def next_message(self):
        self.counter += 1
        return self.conversation, {"type": "send", "id": ulid(),
                                   "text": f"{self.name} #{self.counter}"}

    def handle(self, frame):
        if frame["type"] == "event":
            self.record(frame)
            kind = frame["event"]["kind"]
            if kind == "operator_joined":
                self.joined.set()
            elif kind == "ended":
                self.ended.set()
            else:
                self.send({"type": "ack", "id": ulid(), "seq": frame["seq"]})


class Operator(Peer):
    path = "/ws/operator"

    def __init__(self, *args, capacity, **kwargs):
        super().__init__(*args, **kwargs)
        self.capacity = capacity
        self.held = []  # conversations accepted, in order
        self.answered = {}  # client id of a request -> its answer
        self.turn = 0

    def hello(self):
        last = {c: self.last_seq(c) for c in self.held}
        return {"type": "hello", "v": 1, "id": ulid(), "last_seqs": last}

    def welcomed(self, frame):
        pass

    def request(self, frame, within=10.0):
        """A command sent from the main thread while this thread runs; waits for its answer."""
        frame["id"] = ulid()
        self.ws.send(json.dumps(frame))
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            with self.lock:
                if frame["id"] in self.answered:
                    answer = self.answered.pop(frame["id"])
                    if answer["type"] == "error":
                        raise Broken(f"{self.name}: {frame['type']} refused: {answer}")
                    return answer
            time.sleep(0.02)
        raise Broken(f"{self.name}: no answer to {frame['type']}")

    def next_message(self):
        if not self.held:
            return None
        conversation = self.held[self.turn % len(self.held)]
        self.turn += 1
        self.counter += 1
        return conversation, {"type": "send", "id": ulid(), "conversation": conversation,
                              "text": f"{self.name} #{self.counter}"}

    def handle(self, frame):
        t = frame["type"]
        if t == "offer" and len(self.held) < self.capacity and frame["conversation"] not in self.held:
            self.held.append(frame["conversation"])
            self.send({"type": "accept", "id": ulid(),
                                     "conversation": frame["conversation"]})
        elif t == "event":
            self.record(frame)
            if frame["event"]["kind"] == "message":
                self.send({"type": "ack", "id": ulid(),
                                         "conversation": frame["conversation"],
                                         "seq": frame["seq"]})
        elif t in ("ack", "error") and frame.get("id"):
            with self.lock:
                self.answered[frame["id"]] = frame
