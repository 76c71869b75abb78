"""The ``[oidc]`` table of the service's configuration, checked (docs/service.md); what uses
it is :mod:`.oidc`. :mod:`.config` turns a :class:`SettingError` into its ``ConfigError``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .schedule_config import SettingError, given_once

_KEYS = {"issuer", "client_id", "client_secret_env", "client_secret_file", "redirect_url", "scopes", "label",
         "email_claim"}


@dataclass(frozen=True)
class OidcConfig:
    issuer: str
    client_id: str
    client_secret: str = field(repr=False)
    #: Where the provider sends the browser back: this service's ``/login/oidc/callback`` as
    #: the browser reaches it (behind the proxy), registered with the provider.
    redirect_url: str = ""
    scopes: tuple[str, ...] = ("openid", "email")
    label: str = "Sign in with single sign-on"
    email_claim: str = "email"


def _url(value: Any, where: str) -> str:
    """An https URL (or http on loopback, for a provider on the same host)."""
    if not isinstance(value, str):
        raise SettingError(f"{where} must be a URL")
    parts = urlsplit(value)
    loopback = parts.hostname in ("127.0.0.1", "localhost", "::1")
    if parts.scheme != "https" and not (parts.scheme == "http" and loopback):
        raise SettingError(f"{where} must be an https:// URL (http only on loopback), not {value!r}")
    return value


def parse_oidc(table: Mapping[str, Any], env: Mapping[str, str], base: Path) -> OidcConfig | None:
    """The ``[oidc]`` table, checked; None when absent."""
    if not table:
        return None
    if "client_secret" in table:
        raise SettingError("[oidc] client_secret is a secret: give it in an environment variable "
                           "(client_secret_env) or a file (client_secret_file)")
    unknown = sorted(set(table) - _KEYS)
    if unknown:
        raise SettingError(f"unknown key {unknown[0]!r} in [oidc]; valid keys: " + ", ".join(sorted(_KEYS)))
    for key in ("issuer", "client_id", "redirect_url"):
        if not isinstance(table.get(key), str) or not table[key]:
            raise SettingError(f"[oidc] needs {key}")
    secret = given_once(table, "client_secret", "[oidc]", env, base, "the OIDC client secret")
    scopes = table.get("scopes", ["openid", "email"])
    if not isinstance(scopes, list) or "openid" not in scopes or not all(isinstance(s, str) for s in scopes):
        raise SettingError("[oidc] scopes must be a list of strings with \"openid\"")
    redirect = _url(table["redirect_url"], "[oidc] redirect_url")
    if not urlsplit(redirect).path.endswith("/login/oidc/callback"):
        raise SettingError("[oidc] redirect_url must end in /login/oidc/callback (this service's callback)")
    return OidcConfig(_url(table["issuer"], "[oidc] issuer").rstrip("/"), table["client_id"], secret,
                      redirect, tuple(scopes), str(table.get("label", OidcConfig.label)),
                      str(table.get("email_claim", "email")))
