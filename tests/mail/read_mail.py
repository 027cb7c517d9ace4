"""Reads mails the test SMTP server saved, with Python's own mail parser, and prints them as
one JSON list: envelope, headers, and each text part decoded. usage: read_mail.py FILE..."""
import email
import email.policy
import json
import sys

out = []
for path in sys.argv[1:]:
    with open(path, "rb") as f:
        m = email.message_from_binary_file(f, policy=email.policy.default)
    parts = {}
    for part in m.walk():
        if part.get_content_maintype() == "text":
            parts[part.get_content_type()] = part.get_content()
    out.append({
        "file": path,
        "envelope_to": m["X-Envelope-To"],
        "auth_user": m["X-Auth-User"],
        "from": str(m["From"]),
        "to": str(m["To"]),
        "subject": str(m["Subject"]),
        "message_id": str(m["Message-ID"]),
        "content_type": m.get_content_type(),
        "text": parts.get("text/plain"),
        "html": parts.get("text/html"),
    })
json.dump(out, sys.stdout)
