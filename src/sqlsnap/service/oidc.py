"""Single sign-on with OpenID Connect (``[oidc]``, off by default): the login page offers
"Sign in with ..."; the provider authenticates the person and the service opens a session for
the account with the email it names. The account must exist (``sqlsnap users add``), with its
role: the provider says who someone is, the service decides what they may do.

The authorization code flow with PKCE, through authlib's OAuth 2 client (the code exchange)
and joserfc (the ID token's signature and claims, against the provider's published keys):

1. ``/login/oidc`` stores a random ``state``, ``nonce`` and PKCE verifier in the state
   database (one row, by the state's SHA-256, for ``LOGIN_SECONDS``), sets the state in a
   cookie, and sends the browser to the provider's authorization endpoint.
2. ``/login/oidc/callback`` takes the row back (once: it is deleted), checks that the state
   is the cookie's (a login started in this browser, not a link someone sent), exchanges the
   code for tokens with the client secret and the verifier, and checks the ID token: signed by
   a key of the provider's JWKS, issued by the configured issuer, for this client, not
   expired, carrying the nonce. Its ``email`` (``email_claim``) names the account; a token
   that says ``email_verified: false`` is refused.

The cookie is ``SameSite=Lax`` (the provider's redirect back is a cross-site navigation,
which a ``Strict`` cookie would not come with), ``HttpOnly``, and lives ``LOGIN_SECONDS``.
The client secret is a secret: from the environment or a file, never shown.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from ..errors import MissingDriverError, SnapError
from .oidc_config import OidcConfig
from .state import State, now

#: How long a login may take at the provider (typing a password, a second factor).
LOGIN_SECONDS = 600
#: Seconds to wait for the provider's discovery document, keys and token endpoint.
TIMEOUT_SECONDS = 10
COOKIE = "sqlsnap_oidc"
SCHEMA = """
CREATE TABLE IF NOT EXISTS oidc_logins (
    state_hash TEXT PRIMARY KEY,
    nonce TEXT NOT NULL,
    verifier TEXT NOT NULL,
    next TEXT NOT NULL,
    created REAL NOT NULL
);
"""
INSTALL_HINT = "pip install 'sqlsnap[oidc]'  (installs authlib and httpx)"


class LoginFailed(SnapError):
    """The provider's answer cannot open a session; the message says why (no secret in it)."""


def _client(config: OidcConfig) -> Any:
    try:
        from authlib.integrations.httpx_client import OAuth2Client
    except ImportError:
        raise MissingDriverError(f"OIDC login needs authlib; {INSTALL_HINT}", dialect="oidc") from None
    return OAuth2Client(config.client_id, config.client_secret, scope=" ".join(config.scopes),
                        redirect_uri=config.redirect_url, code_challenge_method="S256",
                        timeout=TIMEOUT_SECONDS)


class Provider:
    """The provider's endpoints and keys, read from its discovery document when first needed
    (and the keys again when a token names a key not seen yet: providers rotate them)."""

    def __init__(self, config: OidcConfig) -> None:
        self.config = config
        self._meta: dict[str, Any] | None = None
        self._keys: Any = None

    def _get(self, url: str) -> Any:
        import httpx

        try:
            response = httpx.get(url, timeout=TIMEOUT_SECONDS, follow_redirects=False)
            response.raise_for_status()
            return response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise LoginFailed(f"the OIDC provider did not answer at {url} ({type(exc).__name__}); try again "
                              "later, or check [oidc] issuer") from None

    def metadata(self) -> dict[str, Any]:
        if self._meta is None:
            meta = self._get(self.config.issuer + "/.well-known/openid-configuration")
            if not isinstance(meta, dict) or meta.get("issuer", "").rstrip("/") != self.config.issuer:
                raise LoginFailed(f"the OIDC discovery document of {self.config.issuer} names another issuer")
            self._meta = meta
        return self._meta

    def keys(self, refresh: bool = False) -> Any:
        from joserfc.jwk import KeySet

        if self._keys is None or refresh:
            self._keys = KeySet.import_key_set(self._get(self.metadata()["jwks_uri"]))
        return self._keys


def ensure_schema(state: State) -> None:
    state.create(SCHEMA)


def begin(provider: Provider, state: State, next_url: str) -> tuple[str, str]:
    """(the provider's authorization URL, the cookie's value) for a login that returns to
    ``next_url``."""
    from authlib.common.security import generate_token

    from .auth import digest

    config = provider.config
    login_state, nonce, verifier = secrets.token_urlsafe(32), secrets.token_urlsafe(32), generate_token(64)
    state.execute("DELETE FROM oidc_logins WHERE created < ?", [now() - LOGIN_SECONDS])
    state.execute("INSERT INTO oidc_logins (state_hash, nonce, verifier, next, created) "
                  "VALUES (?, ?, ?, ?, ?)", [digest(login_state), nonce, verifier, next_url, now()])
    with _client(config) as client:
        url, _ = client.create_authorization_url(provider.metadata()["authorization_endpoint"],
                                                 state=login_state, nonce=nonce, code_verifier=verifier)
    return str(url), login_state


def finish(provider: Provider, state: State, login_state: str, cookie: str | None,
           code: str) -> tuple[str, str]:
    """(the email the provider vouches for, where to go next); LoginFailed with the reason."""
    from .auth import digest, same

    if not login_state or not same(login_state, cookie):
        raise LoginFailed("this sign-in was not started in this browser (its state does not match); "
                          "start it again from the login page")
    key = digest(login_state)
    row = state.one("SELECT * FROM oidc_logins WHERE state_hash = ?", [key])
    if row is None or state.execute("DELETE FROM oidc_logins WHERE state_hash = ?", [key]) != 1:
        raise LoginFailed("this sign-in was already used or is unknown; start it again from the login page")
    if row["created"] < now() - LOGIN_SECONDS:
        raise LoginFailed(f"this sign-in took more than {LOGIN_SECONDS // 60} minutes; start it again")
    client, endpoint = _client(provider.config), provider.metadata()["token_endpoint"]
    try:
        with client:
            tokens = client.fetch_token(endpoint, code=code, code_verifier=row["verifier"],
                                        grant_type="authorization_code")
    except Exception as exc:  # noqa: BLE001 - authlib's and httpx's errors: the provider refused
        raise LoginFailed(f"the OIDC provider refused the code ({type(exc).__name__}: "
                          f"{' '.join(str(exc).split())[:200]})") from None
    claims = check_id_token(provider, tokens.get("id_token"), row["nonce"])
    email = claims.get(provider.config.email_claim)
    if not isinstance(email, str) or "@" not in email:
        raise LoginFailed(f"the ID token has no {provider.config.email_claim} claim; ask for the email scope "
                          "([oidc] scopes) or set email_claim")
    if claims.get("email_verified") is False:
        raise LoginFailed(f"the provider has not verified {email}")
    return email, str(row["next"])


def check_id_token(provider: Provider, token: Any, nonce: str) -> dict[str, Any]:
    """The claims of ``token`` once its signature, issuer, audience, expiry and nonce hold."""
    from joserfc import jwt
    from joserfc.errors import JoseError

    if not isinstance(token, str):
        raise LoginFailed("the OIDC provider sent no ID token; is the openid scope allowed for this client?")
    config = provider.config
    algorithms = provider.metadata().get("id_token_signing_alg_values_supported") or ["RS256"]
    algorithms = [a for a in algorithms if a != "none"]
    try:
        try:
            decoded = jwt.decode(token, provider.keys(), algorithms=algorithms)
        except JoseError:
            decoded = jwt.decode(token, provider.keys(refresh=True), algorithms=algorithms)  # keys rotated
        registry = jwt.JWTClaimsRegistry(now=int(time.time()), leeway=60,
                                         iss={"essential": True, "value": provider.metadata()["issuer"]},
                                         aud={"essential": True, "value": config.client_id},
                                         exp={"essential": True}, nonce={"essential": True, "value": nonce})
        registry.validate(decoded.claims)
    except (JoseError, ValueError) as exc:
        raise LoginFailed(f"the ID token does not hold ({type(exc).__name__}: {exc})") from None
    return dict(decoded.claims)
