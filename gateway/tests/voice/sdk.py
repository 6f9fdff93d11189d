"""Helper for gateway/tests/voice.rs: Twilio's official Python library (`twilio` on PyPI) as an
independent implementation of the webhook signature, and Python's XML parser for the TwiML the
gateway answers. One JSON request per line on stdin, one JSON answer per line on stdout.

  {"op":"sign","token":…,"url":…,"params":[[name,value],…]}  -> {"signature":…}
  {"op":"twiml","xml":…}                                     -> {"verbs":[{"verb","attrs","text","children"}…]}
"""
import json
import sys
import xml.etree.ElementTree as ET

from twilio.request_validator import RequestValidator


def sign(req):
    params = {k: v for k, v in req["params"]}
    validator = RequestValidator(req["token"])
    signature = validator.compute_signature(req["url"], params)
    # The library's own check must accept what it computed.
    assert validator.validate(req["url"], params, signature)
    return {"signature": signature}


def verb(el):
    return {
        "verb": el.tag,
        "attrs": dict(el.attrib),
        "text": (el.text or "").strip(),
        "children": [verb(c) for c in el],
    }


def twiml(req):
    root = ET.fromstring(req["xml"].encode("utf-8"))
    assert root.tag == "Response", root.tag
    return {"verbs": [verb(c) for c in root]}


OPS = {"sign": sign, "twiml": twiml}

for line in sys.stdin:
    try:
        req = json.loads(line)
        out = OPS[req["op"]](req)
    except Exception as e:  # noqa: BLE001 - reported to the test
        out = {"error": f"{type(e).__name__}: {e}"}
    sys.stdout.write(json.dumps(out, ensure_ascii=False) + "\n")
    sys.stdout.flush()
