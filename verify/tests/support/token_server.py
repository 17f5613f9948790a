"""A Docker/OCI token server for the test registry (distribution's `auth: token`).

    token_server.py PORT KEY.pem CERT.pem ISSUER SERVICE USER PASSWORD

Answers GET /token?service=..&scope=repository:NAME:pull with {"token": JWT} when the request
carries `Authorization: Basic USER:PASSWORD`, else 401. The JWT is ES256, signed with KEY.pem,
and carries CERT.pem in its x5c header (the registry trusts it via rootcertbundle).
"""

from __future__ import annotations

import base64
import json
import sys
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

PORT, KEY, CERT, ISSUER, SERVICE, USER, PASSWORD = sys.argv[1:8]
key = serialization.load_pem_private_key(open(KEY, "rb").read(), password=None)
cert = x509.load_pem_x509_certificate(open(CERT, "rb").read())
cert_der = cert.public_bytes(serialization.Encoding.DER)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt(scope: str) -> str:
    header = {"alg": "ES256", "typ": "JWT", "x5c": [base64.b64encode(cert_der).decode()]}
    now = int(time.time())
    access = []
    if scope.startswith("repository:"):
        _, name, actions = scope.split(":", 2)
        access.append({"type": "repository", "name": name, "actions": actions.split(",")})
    claims = {"iss": ISSUER, "sub": USER, "aud": SERVICE, "exp": now + 300, "nbf": now - 10,
              "iat": now, "jti": str(uuid.uuid4()), "access": access}
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    der = key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
    r, s = decode_dss_signature(der)
    return f"{signing_input}.{b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        url = urlparse(self.path)
        expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        if url.path != "/token" or self.headers.get("Authorization") != expected:
            self.send_response(401)
            self.end_headers()
            return
        scope = parse_qs(url.query).get("scope", [""])[0]
        body = json.dumps({"token": jwt(scope)}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


server = ThreadingHTTPServer(("127.0.0.1", int(PORT)), Handler)
print("ready", flush=True)
server.serve_forever()
