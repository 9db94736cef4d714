#!/usr/bin/env python3
"""A client of the original demo's HTTP form protocol, Python standard library only.

Speaks exactly what the original's Keras clients sent (form-encoded POST on /,
fields id, send, datasets, weights as JSON text) and checks what a compatible
server must answer. Used by the Swift test suite against a real `fed server`:

    python3 original_http_client.py PORT

Prints one JSON object with what it saw; exits non-zero on a protocol error.
"""
import json
import sys
import urllib.error
import urllib.parse
import urllib.request

base = "http://127.0.0.1:%s/" % sys.argv[1]
SHAPES = [[784, 200], [200], [200, 200], [200], [200, 10], [10]]


def quote_plus(text):
    """urllib.parse.quote_plus(text), byte for byte, in one C-speed pass per distinct unsafe character.

    quote_plus encodes each character on its own (its UTF-8 bytes), so replacing every
    character outside its safe set by quote_plus of that character gives the same text.
    Replacements bring in only '%', '+' and hex digits, so '%' and '+' go first and are
    never replaced twice. The standard function costs seconds on a 4 MB weights field.
    """
    unsafe = sorted(set(text) - SAFE, key=lambda c: (c != "%", c != "+"))
    for c in unsafe:
        text = text.replace(c, urllib.parse.quote_plus(c))
    return text


SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~")
# The fast encoding is the standard one on a text with every character class of a weights field.
_sample = json.dumps([[1e-20, -0.5, float("nan")], "%+ &=\u00e9/"])
assert quote_plus(_sample) == urllib.parse.quote_plus(_sample), "quote_plus differs from urllib's"


def post(fields):
    # What urllib.parse.urlencode(fields) gives (the original's clients sent a form encoded so).
    data = "&".join(quote_plus(str(k)) + "=" + quote_plus(str(v)) for k, v in fields.items()).encode()
    try:
        with urllib.request.urlopen(urllib.request.Request(base, data=data), timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def shape(x):
    return [len(x)] + shape(x[0]) if isinstance(x, list) else []


if len(sys.argv) > 2 and sys.argv[2] == "session":
    # Take part in a session: N rounds of fetch, nudge the weights, push 5,000 samples.
    pushes = 0
    for _ in range(int(sys.argv[3])):
        status, body = post({"id": "py-session", "send": "False"})
        assert status == 200, status
        w = json.loads(body)["weights"]
        w[5] = [x + 0.01 for x in w[5]]
        status, body = post({"id": "py-session", "send": "True", "datasets": 5000, "weights": json.dumps(w)})
        assert status == 200 and body == b"Success", (status, body)
        pushes += 1
    print(json.dumps({"pushes": pushes}))
    sys.exit(0)

report = {}
status, body = post({"id": "py-client", "send": "False"})
model = json.loads(body)
report["fetch_status"] = status
report["fetch_bytes"] = len(body)
report["fetch_keys"] = sorted(model.keys())
report["shapes_ok"] = [shape(w) for w in model["weights"]] == SHAPES
report["datasets_before"] = model["datasets"]

weights = model["weights"]
weights[5] = [0.25] * 10
weights_json = json.dumps(weights)  # sent twice: accepted, then with a datasets count out of range
status, body = post({"id": "py-client", "send": "True", "datasets": 5000, "weights": weights_json})
report["push_status"], report["push_body"] = status, body.decode()

bad = [[row[:] for row in w] if isinstance(w[0], list) else w[:] for w in weights]  # a deep copy
bad[0][3][7] = float("nan")
status, body = post({"id": "py-client", "send": "True", "datasets": 5000, "weights": json.dumps(bad)})
report["nan_status"], report["nan_error"] = status, json.loads(body).get("error")

status, body = post({"id": "py-client", "send": "True", "datasets": 1000000000, "weights": weights_json})
report["huge_datasets_status"], report["huge_datasets_error"] = status, json.loads(body).get("error")

status, body = post({"id": "py-client", "send": "True", "datasets": 10, "weights": json.dumps(weights[:5])})
report["wrong_shape_status"], report["wrong_shape_error"] = status, json.loads(body).get("error")

# GET with a query works too, as in Flask's request.values.
with urllib.request.urlopen(base + "?id=py-client&send=False", timeout=30) as r:
    after = json.loads(r.read())
report["datasets_after"] = after["datasets"]
report["b3_after"] = after["weights"][5][:3]
print(json.dumps(report))
