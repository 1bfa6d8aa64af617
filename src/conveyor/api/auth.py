"""Who is calling, and may they do this? Bearer tokens, dashboard sessions and cross-site checks.

* A bearer token (``Authorization: Bearer ...``) is checked against every configured token's
  SHA-256 digest with ``hmac.compare_digest`` and no early exit, so timing tells nothing.
* A dashboard session is a signed cookie (HMAC-SHA256) carrying the scope, an expiry, a CSRF
  token and a fingerprint of the token that opened it (a removed token ends its sessions).
  It is HttpOnly and SameSite=Strict.
* Every state change made with ambient credentials (a cookie, or no credential at all under
  ``--insecure-local``) must come from this origin: ``Sec-Fetch-Site`` must be same-origin or
  none and ``Origin``, when sent, must name this host (the rule Sidekiq 8.1 and Faktory use).
  Cookie sessions must also echo their CSRF token. Under ``--insecure-local`` the ``Host``
  header must be a loopback name, so DNS rebinding cannot reach the server from a web page.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlsplit

import orjson
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from .config import ApiConfig, Scope, Token, digest, is_loopback
from .errors import ApiError

SESSION_COOKIE = "conveyor_session"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SAME_SITE_FETCH = frozenset({"same-origin", "none"})
bearer = HTTPBearer(auto_error=False, description="An API token: admin, enqueue or read scope")
BearerCredentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: its scope, how it proved itself, and its CSRF token if any."""

    scope: Scope
    via: str  # "token", "session" or "local"
    label: str
    csrf: str = ""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Authenticator:
    """Checks credentials for one server; holds no secret in clear except the session key."""

    def __init__(self, config: ApiConfig) -> None:
        self.config = config
        self.tokens = list(config.tokens)
        self.local_csrf = self._sign(b"local-csrf")[:32]

    def _sign(self, data: bytes) -> str:
        return _b64(hmac.new(self.config.session_secret, data, hashlib.sha256).digest())

    def check_token(self, secret: str) -> Token | None:
        """The token with this secret, comparing against all of them in constant time."""
        wanted = digest(secret)
        found = None
        for token in self.tokens:
            if hmac.compare_digest(wanted, token.digest):
                found = token
        return found

    # --- sessions -------------------------------------------------------------------------------
    def new_session(self, token: Token, now: float | None = None) -> str:
        body = {"s": int(token.scope), "e": int((now or time.time()) + self.config.session_ttl_s),
                "c": _b64(hashlib.sha256(token.digest + str(time.time_ns()).encode()).digest()),
                "t": token.digest.hex()[:16], "l": token.label}
        payload = _b64(orjson.dumps(body))
        return f"v1.{payload}.{self._sign(payload.encode())}"

    def read_session(self, value: str, now: float | None = None) -> Principal | None:
        try:
            version, payload, sig = value.split(".")
            if version != "v1" or not hmac.compare_digest(sig, self._sign(payload.encode())):
                return None
            body = orjson.loads(_unb64(payload))
            scope, expires = Scope(int(body["s"])), float(body["e"])
        except (ValueError, KeyError, TypeError, orjson.JSONDecodeError):
            return None
        if expires < (now or time.time()):
            return None
        if not any(t.digest.hex()[:16] == body.get("t") for t in self.tokens):
            return None
        return Principal(scope, "session", str(body.get("l", "")), str(body.get("c", "")))

    # --- requests -------------------------------------------------------------------------------
    def principal(self, request: Request, secret: str | None) -> Principal | None:
        """The caller, or None. A wrong bearer token is refused outright (no fallback)."""
        if secret is not None:
            token = self.check_token(secret)
            if token is None:
                raise ApiError(401, "unauthorized", "the bearer token is not valid",
                               headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
            return Principal(token.scope, "token", token.label)
        cookie = request.cookies.get(SESSION_COOKIE)
        if cookie:
            found = self.read_session(cookie)
            if found is not None:
                return found
        if self.config.insecure_local:
            self.check_local_host(request)
            return Principal(Scope.ADMIN, "local", "insecure-local", self.local_csrf)
        return None

    def check_local_host(self, request: Request) -> None:
        host = urlsplit("//" + request.headers.get("host", "")).hostname or ""
        if not is_loopback(host):
            raise ApiError(403, "forbidden", "--insecure-local answers only requests addressed to "
                           "a loopback host name (localhost, 127.0.0.1, [::1])")

    def check_same_origin(self, request: Request) -> None:
        """Refuse a state change that a browser made on behalf of another site."""
        site = request.headers.get("sec-fetch-site")
        if site is not None and site not in SAME_SITE_FETCH:
            raise ApiError(403, "cross_site", f"cross-site request refused (Sec-Fetch-Site: "
                           f"{site[:40]})")
        origin = request.headers.get("origin")
        if origin is not None and urlsplit(origin).netloc != request.headers.get("host", ""):
            raise ApiError(403, "cross_site", "cross-site request refused (Origin does not "
                           "match this host)")

    def check_mutation(self, request: Request, who: Principal, supplied_csrf: str | None,
                       strict: bool = False) -> None:
        """Ambient credentials (cookie, local) must be same-origin; cookies must echo their
        CSRF token, and so must local callers when ``strict`` (dashboard forms)."""
        if who.via == "token":
            return
        self.check_same_origin(request)
        if (who.via == "session" or strict) and not (
                supplied_csrf and hmac.compare_digest(supplied_csrf.encode(), who.csrf.encode())):
            raise ApiError(403, "csrf", "the CSRF token is missing or wrong; reload the page")


def require(scope: Scope) -> Callable[..., Principal]:
    """A dependency that admits callers holding ``scope`` (or a higher one)."""

    def dependency(request: Request, cred: BearerCredentials = None) -> Principal:
        auth: Authenticator = request.app.state.auth
        header = request.headers.get("authorization")
        if header is not None and cred is None:
            raise ApiError(401, "unauthorized", "the Authorization header must be "
                           "'Bearer <token>'", headers={"WWW-Authenticate": "Bearer"})
        who = auth.principal(request, cred.credentials if cred else None)
        if who is None:
            raise ApiError(401, "unauthorized", "this needs a bearer token (Authorization: "
                           "Bearer <token>) or a dashboard session",
                           headers={"WWW-Authenticate": "Bearer"})
        if request.method not in SAFE_METHODS:
            auth.check_mutation(request, who, request.headers.get(CSRF_HEADER))
        if who.scope < scope:
            raise ApiError(403, "forbidden", f"this needs the {scope.name.lower()} scope; the "
                           f"credentials given have {who.scope.name.lower()}")
        return who

    dependency.scope = scope  # type: ignore[attr-defined]
    return dependency


def required_scope(dependency: Any) -> Scope | None:
    """The scope a route's dependency demands (used by tests that enumerate routes)."""
    return getattr(dependency, "scope", None)
