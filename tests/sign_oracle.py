"""An independent implementation of the vendor gateway's SDK-HMAC-SHA256 signature, written from the
published algorithm with nothing but the standard library, as an oracle for the Rust signer.
Reads a JSON list of requests on stdin; writes a JSON list of Authorization values."""

import hashlib
import hmac
import json
import sys
from urllib.parse import quote, unquote


def canonical_uri(path):
    encoded = "/".join(quote(segment, safe="~") for segment in unquote(path).split("/"))
    return encoded if encoded.endswith("/") else encoded + "/"


def canonical_query(query):
    pairs = sorted((quote(k, safe="~"), quote(v, safe="~")) for k, v in query)
    return "&".join(f"{k}={v}" for k, v in pairs)


def sign(req):
    headers = {}
    for name, value in req["headers"]:
        headers[name.lower()] = value.strip()
    names = sorted(headers)
    canonical = "\n".join(
        [
            req["method"].upper(),
            canonical_uri(req["path"]),
            canonical_query(req["query"]),
            "".join(f"{n}:{headers[n]}\n" for n in names),
            ";".join(names),
            hashlib.sha256(req["body"].encode("utf-8")).hexdigest(),
        ]
    )
    to_sign = "\n".join(["SDK-HMAC-SHA256", headers["x-sdk-date"], hashlib.sha256(canonical.encode("utf-8")).hexdigest()])
    signature = hmac.new(req["sk"].encode("utf-8"), to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
    return f"SDK-HMAC-SHA256 Access={req['ak']}, SignedHeaders={';'.join(names)}, Signature={signature}"


json.dump([sign(r) for r in json.load(sys.stdin)], sys.stdout)
