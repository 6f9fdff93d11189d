"""Parses an e-mail with Python's standard MIME parser (`email`, policy `default`) and prints
what the alert tests check, as JSON: sender, recipients, decoded subject, decoded text body,
and every header's raw value."""

import json
import sys
from email import policy
from email.parser import BytesParser

with open(sys.argv[1], "rb") as f:
    msg = BytesParser(policy=policy.default).parse(f)
body = msg.get_body(preferencelist=("plain",))
print(
    json.dumps(
        {
            "from": str(msg["from"]),
            "to": str(msg["to"]),
            "subject": str(msg["subject"]),
            "content_type": msg.get_content_type(),
            "charset": body.get_content_charset() if body else None,
            "text": body.get_content() if body else "",
            "headers": [[k, str(v)] for k, v in msg.items()],
        },
        ensure_ascii=False,
    )
)
