"""A small OpenID Connect provider for the tests: discovery, an authorization endpoint that
signs in whoever the test says (no form), a token endpoint that checks the client secret, the
code and its PKCE verifier, and the keys it signs ID tokens with (RS256)."""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from joserfc import jwt
from joserfc.jwk import RSAKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

CLIENT_ID, CLIENT_SECRET = "sqlsnap", "oidc-client-secret"


@dataclass
class Provider:
    issuer: str = ""
    #: Who the next sign-in is, and what the ID token says of them.
    email: str = ""
    email_verified: bool | None = True
    #: Sign with a key the JWKS does not publish (a forged token).
    forge: bool = False
    #: Answer the next authorization with this error instead of a code.
    error: str = ""
    key: Any = field(default_factory=lambda: RSAKey.generate_key(2048, parameters={"kid": "k1"}))
    codes: dict[str, dict[str, str]] = field(default_factory=dict)

    def app(self) -> Starlette:
        return Starlette(routes=[
            Route("/.well-known/openid-configuration", self.discovery),
            Route("/authorize", self.authorize), Route("/token", self.token, methods=["POST"]),
            Route("/jwks", self.jwks)])

    async def discovery(self, request: Request) -> Response:
        return JSONResponse({"issuer": self.issuer, "authorization_endpoint": f"{self.issuer}/authorize",
                             "token_endpoint": f"{self.issuer}/token", "jwks_uri": f"{self.issuer}/jwks",
                             "id_token_signing_alg_values_supported": ["RS256"]})

    async def jwks(self, request: Request) -> Response:
        return JSONResponse({"keys": [self.key.as_dict(private=False)]})

    async def authorize(self, request: Request) -> Response:
        q = request.query_params
        if self.error:
            answer = urlencode({"error": self.error, "state": q["state"]})
            return RedirectResponse(f"{q['redirect_uri']}?{answer}")
        assert q["client_id"] == CLIENT_ID and q["code_challenge_method"] == "S256"
        code = secrets.token_urlsafe(16)
        self.codes[code] = {"nonce": q["nonce"], "challenge": q["code_challenge"],
                            "redirect_uri": q["redirect_uri"]}
        return RedirectResponse(f"{q['redirect_uri']}?{urlencode({'code': code, 'state': q['state']})}")

    async def token(self, request: Request) -> Response:
        form = await request.form()
        basic = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        if request.headers.get("authorization") != f"Basic {basic}":
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        grant = self.codes.pop(str(form.get("code")), None)
        verifier = str(form.get("code_verifier", ""))
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        asked = (challenge, form.get("redirect_uri"))
        if grant is None or asked != (grant["challenge"], grant["redirect_uri"]):
            return JSONResponse({"error": "invalid_grant"}, status_code=400)
        claims: dict[str, Any] = {"iss": self.issuer, "aud": CLIENT_ID, "sub": "u-" + self.email,
                                  "email": self.email, "nonce": grant["nonce"], "iat": int(time.time()),
                                  "exp": int(time.time()) + 300}
        if self.email_verified is not None:
            claims["email_verified"] = self.email_verified
        key = RSAKey.generate_key(2048, parameters={"kid": "k1"}) if self.forge else self.key
        id_token = jwt.encode({"alg": "RS256", "kid": "k1"}, claims, key)
        return JSONResponse({"access_token": secrets.token_urlsafe(16), "token_type": "Bearer",
                             "expires_in": 300, "id_token": id_token})
