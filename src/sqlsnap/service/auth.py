"""Accounts, passwords, API tokens, sessions, CSRF tokens and login throttling.

- Passwords: argon2id (argon2-cffi's defaults: 64 MiB, 3 passes), never stored or shown.
- API tokens: ``snp_`` and 32 random bytes, shown once; stored as SHA-256 (the token is
  random, so a slow hash adds nothing but latency to every API call), with an expiry and a
  revocation time.
- Sessions: a random id in a cookie, stored hashed with its expiry and its CSRF token.
- Throttling: ``login_max_failures`` failed logins lock the account for ``lockout_minutes``;
  ``address_max_failures`` failures from one address within that window refuse that address.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any

from ..errors import NotFoundError, UsageError
from .config import SecurityConfig
from .state import State, now

ROLES = ("admin", "viewer")
TOKEN_PREFIX = "snp_"


@dataclass(frozen=True)
class User:
    id: int
    email: str
    role: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def _hasher() -> Any:
    try:
        from argon2 import PasswordHasher
    except ImportError:
        from ..errors import MissingDriverError

        raise MissingDriverError("the service needs argon2-cffi; pip install 'sqlsnap[service]'") from None
    return PasswordHasher()


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _user(row: Any) -> User:
    return User(row["id"], row["email"], row["role"])


def check_password_strength(password: str) -> None:
    if len(password) < 12:
        raise UsageError("the password must be at least 12 characters long")


def add_user(state: State, email: str, role: str, password: str) -> User:
    if role not in ROLES:
        raise UsageError(f"unknown role '{role}'; use one of: {', '.join(ROLES)}")
    if "@" not in email or len(email) > 254:
        raise UsageError(f"'{email}' is not an email address")
    check_password_strength(password)
    if state.one("SELECT 1 FROM users WHERE email = ?", [email]):
        raise UsageError(f"user {email} already exists; remove it first with sqlsnap users remove {email}")
    uid = state.execute("INSERT INTO users (email, role, password_hash, created) VALUES (?, ?, ?, ?)",
                        [email, role, _hasher().hash(password), now()])
    return User(uid, email, role)


def find_user(state: State, email: str) -> User:
    row = state.one("SELECT * FROM users WHERE email = ?", [email])
    if row is None:
        raise NotFoundError(f"no user {email}; list them with sqlsnap users list")
    return _user(row)


def list_users(state: State) -> list[dict[str, Any]]:
    return [dict(email=r["email"], role=r["role"], locked=r["locked_until"] > now())
            for r in state.all("SELECT * FROM users ORDER BY email")]


def remove_user(state: State, email: str) -> None:
    user = find_user(state, email)
    state.execute("DELETE FROM users WHERE id = ?", [user.id])


# -- login ---------------------------------------------------------------------------------------

class LoginRefused(Exception):
    """Why a login failed; ``locked`` when the account or the address is locked out."""

    def __init__(self, message: str, locked: bool = False) -> None:
        super().__init__(message)
        self.locked = locked


def login(state: State, security: SecurityConfig, email: str, password: str, address: str) -> User:
    """The user whose password this is, or :class:`LoginRefused` (same message for an unknown
    user and a wrong password, so the form does not tell which accounts exist)."""
    t = now()
    window = security.lockout_minutes * 60
    state.execute("DELETE FROM login_failures WHERE at < ?", [t - window])
    failures = state.one("SELECT count(*) AS n FROM login_failures WHERE address = ?", [address])
    if failures is not None and failures["n"] >= security.address_max_failures:
        raise LoginRefused("too many failed logins from this address; try again later", locked=True)
    row = state.one("SELECT * FROM users WHERE email = ?", [email])
    if row is not None and row["locked_until"] > t:
        state.execute("INSERT INTO login_failures (address, at) VALUES (?, ?)", [address, t])
        raise LoginRefused("this account is locked after too many failed logins; try again later",
                           locked=True)
    ok = False
    if row is not None and row["password_hash"]:
        from argon2.exceptions import VerificationError

        try:
            ok = _hasher().verify(row["password_hash"], password)
        except VerificationError:
            ok = False
    else:
        # As long as a real check, so response times do not tell which accounts exist.
        _hasher().hash(password)
    if not ok or row is None:
        state.execute("INSERT INTO login_failures (address, at) VALUES (?, ?)", [address, t])
        if row is not None:
            failed = row["failed_logins"] + 1
            locked_until = t + window if failed >= security.login_max_failures else 0
            state.execute("UPDATE users SET failed_logins = ?, locked_until = ? WHERE id = ?",
                          [0 if locked_until else failed, locked_until, row["id"]])
        raise LoginRefused("wrong email or password")
    state.execute("UPDATE users SET failed_logins = 0, locked_until = 0 WHERE id = ?", [row["id"]])
    return _user(row)


# -- sessions ------------------------------------------------------------------------------------

def new_session(state: State, user: User, security: SecurityConfig) -> tuple[str, str]:
    """(session id for the cookie, its CSRF token)."""
    sid, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    t = now()
    state.execute("INSERT INTO sessions (id_hash, user_id, csrf, created, expires) VALUES (?, ?, ?, ?, ?)",
                  [digest(sid), user.id, csrf, t, t + security.session_minutes * 60])
    return sid, csrf


def session_user(state: State, sid: str | None) -> tuple[User, str] | None:
    """The user and CSRF token of a live session."""
    if not sid:
        return None
    row = state.one("SELECT users.*, sessions.csrf, sessions.expires FROM sessions JOIN users "
                    "ON users.id = sessions.user_id WHERE sessions.id_hash = ?", [digest(sid)])
    if row is None or row["expires"] < now():
        return None
    return _user(row), row["csrf"]


def end_session(state: State, sid: str | None) -> None:
    if sid:
        state.execute("DELETE FROM sessions WHERE id_hash = ?", [digest(sid)])


def same(a: str | None, b: str | None) -> bool:
    """Constant-time comparison of two tokens; False when either is missing."""
    return bool(a) and bool(b) and hmac.compare_digest(str(a), str(b))


# -- API tokens ----------------------------------------------------------------------------------

def create_token(state: State, email: str, name: str, days: int) -> str:
    """A new token for ``email``, valid ``days`` days: returned once, stored hashed."""
    user = find_user(state, email)
    if days < 1:
        raise UsageError("--days must be at least 1")
    if state.one("SELECT 1 FROM tokens WHERE user_id = ? AND name = ?", [user.id, name]):
        raise UsageError(f"{email} already has a token named '{name}'; revoke it first or choose another "
                         "name")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    t = now()
    state.execute("INSERT INTO tokens (user_id, name, hash, created, expires) VALUES (?, ?, ?, ?, ?)",
                  [user.id, name, digest(token), t, t + days * 86400])
    return token


def revoke_token(state: State, email: str, name: str) -> None:
    user = find_user(state, email)
    changed = state.execute("UPDATE tokens SET revoked = ? WHERE user_id = ? AND name = ? "
                            "AND revoked IS NULL", [now(), user.id, name])
    if not changed:
        raise NotFoundError(f"{email} has no live token named '{name}'; list them with sqlsnap tokens list")


def list_tokens(state: State) -> list[dict[str, Any]]:
    return [dict(user=r["email"], name=r["name"], created=r["created"], expires=r["expires"],
                 revoked=r["revoked"])
            for r in state.all("SELECT tokens.*, users.email FROM tokens JOIN users "
                               "ON users.id = tokens.user_id ORDER BY users.email, tokens.name")]


def token_user(state: State, token: str) -> tuple[User | None, str]:
    """The token's user, or None and why (``unknown``, ``expired``, ``revoked``)."""
    row = state.one("SELECT users.*, tokens.expires, tokens.revoked FROM tokens JOIN users "
                    "ON users.id = tokens.user_id WHERE tokens.hash = ?", [digest(token)])
    if row is None:
        return None, "unknown"
    if row["revoked"] is not None:
        return None, "revoked"
    if row["expires"] < now():
        return None, "expired"
    return _user(row), ""
