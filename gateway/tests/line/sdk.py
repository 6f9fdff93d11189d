#!/usr/bin/env python3
"""LINE's official Python SDK (line-bot-sdk, v3 API) as an independent implementation for the
LINE connector's tests (gateway/tests/line.rs).

Runs as a small server on stdin/stdout: one JSON request per line, one JSON answer per line.

  {"op": "sign", "secret": "...", "body": "..."}
      Signs a webhook body the way the LINE platform does (base64 HMAC-SHA256 with the channel
      secret), then checks that the SDK's own SignatureValidator accepts the signature and that
      its WebhookParser parses the body (so every test body is a valid webhook per the SDK).
      -> {"signature": "...", "events": ["MessageEvent", ...]}

  {"op": "check", "requests": [{"path": ..., "authorization": ..., "retry_key": ..., "body": {...}}]}
      Parses each request the gateway made to the (fake) Messaging API into the SDK's request
      models, and checks the bearer token and the retry key.
      -> {"ok": true, "summary": [...]} or {"ok": false, "error": "..."}

Any failure is reported as {"error": "..."}; the test fails on it.
"""

import base64
import hashlib
import hmac
import json
import sys
import uuid

from linebot.v3 import SignatureValidator
from linebot.v3.messaging import (
    MarkMessagesAsReadByTokenRequest,
    PushMessageRequest,
    ReplyMessageRequest,
    ShowLoadingAnimationRequest,
    TextMessage,
)
from linebot.v3.webhook import WebhookParser

MODELS = {
    "/v2/bot/message/push": PushMessageRequest,
    "/v2/bot/message/reply": ReplyMessageRequest,
    "/v2/bot/chat/loading/start": ShowLoadingAnimationRequest,
    "/v2/bot/chat/markAsRead": MarkMessagesAsReadByTokenRequest,
}


def sign(req):
    secret, body = req["secret"], req["body"]
    digest = hmac.new(secret.encode(), body.encode(), hashlib.sha256).digest()
    signature = base64.b64encode(digest).decode()
    if not SignatureValidator(secret).validate(body, signature):
        raise ValueError("SDK SignatureValidator refused our signature")
    events = WebhookParser(secret).parse(body, signature)
    return {"signature": signature, "events": [type(e).__name__ for e in events]}


def check_one(r):
    path = r["path"]
    model = MODELS.get(path)
    if model is None:
        raise ValueError(f"unexpected API path {path}")
    auth = r.get("authorization") or ""
    if not auth.startswith("Bearer ") or len(auth) <= len("Bearer "):
        raise ValueError(f"{path}: no bearer token")
    parsed = model.from_json(json.dumps(r["body"]))
    summary = {"path": path}
    if path == "/v2/bot/message/push":
        key = r.get("retry_key")
        if not key:
            raise ValueError("push without X-Line-Retry-Key")
        uuid.UUID(key)  # raises if not a UUID
        if not parsed.to:
            raise ValueError("push without a recipient")
    if path in ("/v2/bot/message/push", "/v2/bot/message/reply"):
        if not 1 <= len(parsed.messages) <= 5:
            raise ValueError(f"{path}: {len(parsed.messages)} messages")
        for m in parsed.messages:
            if not isinstance(m, TextMessage):
                raise ValueError(f"{path}: not a text message: {type(m).__name__}")
            if not 1 <= len(m.text) <= 5000:
                raise ValueError(f"{path}: text of {len(m.text)} characters")
        summary["messages"] = len(parsed.messages)
    if path == "/v2/bot/chat/loading/start":
        s = parsed.loading_seconds
        if s is not None and (s % 5 != 0 or not 5 <= s <= 60):
            raise ValueError(f"loadingSeconds {s}")
    return summary


def check(req):
    return {"ok": True, "summary": [check_one(r) for r in req["requests"]]}


def main():
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            req = json.loads(line)
            op = req.get("op")
            if op == "sign":
                out = sign(req)
            elif op == "check":
                out = check(req)
            else:
                out = {"error": f"unknown op {op!r}"}
        except Exception as e:  # noqa: BLE001 - every failure goes back to the test
            out = {"error": f"{type(e).__name__}: {e}"}
        sys.stdout.write(json.dumps(out) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
