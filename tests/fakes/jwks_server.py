"""A real JWKS endpoint on loopback (stdlib http.server) with keys made by `cryptography`.

Like an identity provider (Firebase Auth): it serves the public keys, counts its fetches
so tests can prove caching, and can rotate keys. `Signer.token(...)` signs tokens;
`unsigned_token(...)` makes the `alg: none` kind an attacker sends.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm


def unsigned_token(claims: dict[str, Any], headers: dict[str, Any] | None = None) -> str:
    """A JWT with `alg: none` and an empty signature (PyJWT's encode takes no None key)."""
    header = {"alg": "none", "typ": "JWT", **(headers or {})}
    parts = (json.dumps(part, separators=(",", ":")).encode() for part in (header, claims))
    return ".".join(jwt.utils.base64url_encode(part).decode() for part in parts) + "."


@dataclass
class Signer:
    kid: str
    algorithm: str  # RS256 or ES256
    private_key: Any

    @classmethod
    def rsa(cls, kid: str) -> Signer:
        return cls(kid, "RS256", rsa.generate_private_key(public_exponent=65537, key_size=2048))

    @classmethod
    def ec(cls, kid: str) -> Signer:
        return cls(kid, "ES256", ec.generate_private_key(ec.SECP256R1()))

    def jwk(self) -> dict[str, Any]:
        public = self.private_key.public_key()
        algo = RSAAlgorithm if self.algorithm.startswith("RS") else ECAlgorithm
        data: dict[str, Any] = json.loads(algo.to_jwk(public))
        data.update({"kid": self.kid, "alg": self.algorithm, "use": "sig"})
        return data

    def token(
        self,
        *,
        sub: str = "alice",
        lifetime_s: int = 300,
        headers: dict[str, Any] | None = None,
        **claims: Any,
    ) -> str:
        now = datetime.now(UTC)
        payload: dict[str, Any] = {
            "sub": sub,
            "iat": int(now.timestamp()),
            "exp": int((now + timedelta(seconds=lifetime_s)).timestamp()),
        }
        payload.update(claims)
        return jwt.encode(
            payload,
            self.private_key,
            algorithm=self.algorithm,
            headers={"kid": self.kid, **(headers or {})},
        )


@dataclass
class JwksServer:
    url: str
    signers: list[Signer]
    fetches: int = 0
    fail: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def document(self) -> bytes:
        with self._lock:
            self.fetches += 1
            return json.dumps({"keys": [s.jwk() for s in self.signers]}).encode()


@contextmanager
def serve_jwks(*signers: Signer) -> Iterator[JwksServer]:
    state = JwksServer(url="", signers=list(signers))

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if state.fail:
                self.send_response(500)
                self.end_headers()
                return
            body = state.document()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/jwks.json"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
