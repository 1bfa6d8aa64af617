"""What the API server is told: where it listens, who may call it, and its limits.

Tokens are given as ``scope:secret`` (``admin:...``, ``enqueue:...``, ``read:...``), on the
command line or in ``CONVEYOR_API_TOKENS`` (comma-separated). Only their SHA-256 digests are
kept in memory, so comparing digests of equal length in constant time cannot leak a token's
length. A server that is given no token and no ``--insecure-local`` makes one admin token at
start and prints it once (as Jupyter does), so security is on by default.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import secrets
from dataclasses import dataclass, field
from enum import IntEnum

from ..errors import ConfigurationError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8181
MAX_BODY_BYTES = 1024 * 1024  # requests larger than this get 413 before their body is read
REQUEST_RECEIVE_DEADLINE_S = 15.0  # time a client gets to send one whole request
KEEP_ALIVE_S = 5.0  # an idle kept-alive connection is closed after this
MEMORY_HIGH_WATER = 0.9  # submissions get 503 once Redis uses this share of its maxmemory
MEMORY_CHECK_INTERVAL_S = 0.5  # how stale the API's reading of Redis's memory may be
API_REDIS_TIMEOUT_S = 1.0  # a Redis call slower than this answers 503 (Redis is unreachable)
SESSION_TTL_S = 8 * 3600
MIN_TOKEN_CHARS = 24
GENERATED_TOKEN_BYTES = 24
MAX_BATCH_JOBS = 1000
IDEMPOTENCY_TTL_S = 24 * 3600
HISTORY_SAMPLE_S = 1.0  # the per-second throughput history samples the stat counters this often
HISTORY_POINTS = 300  # five minutes of per-second samples


class Scope(IntEnum):
    """What a caller may do; each scope includes the ones below it."""

    READ = 1
    ENQUEUE = 2
    ADMIN = 3

    @classmethod
    def parse(cls, text: str) -> Scope:
        try:
            return cls[text.strip().upper()]
        except KeyError:
            names = ", ".join(s.name.lower() for s in cls)
            raise ConfigurationError(f"unknown token scope {text!r}; one of: {names}") from None


@dataclass(frozen=True)
class Token:
    """A token's digest, its scope and a label for logs (never the secret itself)."""

    digest: bytes
    scope: Scope
    label: str


def digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).digest()


def parse_token(spec: str) -> Token:
    """``scope:secret`` -> Token; refuses short secrets, which could be guessed."""
    scope_text, sep, secret = spec.partition(":")
    if not sep or not secret:
        raise ConfigurationError("an API token must look like 'admin:SECRET', 'enqueue:SECRET' "
                                 "or 'read:SECRET'")
    if len(secret) < MIN_TOKEN_CHARS:
        raise ConfigurationError(f"API tokens need at least {MIN_TOKEN_CHARS} characters; "
                                 "make one with `conveyor api token`")
    scope = Scope.parse(scope_text)
    return Token(digest(secret), scope, f"{scope.name.lower()}-{digest(secret).hex()[:8]}")


def new_secret() -> str:
    return secrets.token_urlsafe(GENERATED_TOKEN_BYTES)


def is_loopback(host: str) -> bool:
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass
class ApiConfig:
    """Settings of one API server; see ``conveyor api --help`` for the flags that fill it."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    tokens: list[Token] = field(default_factory=list)
    insecure_local: bool = False
    cors_origins: list[str] = field(default_factory=list)
    max_body_bytes: int = MAX_BODY_BYTES
    receive_deadline_s: float = REQUEST_RECEIVE_DEADLINE_S
    keep_alive_s: float = KEEP_ALIVE_S
    session_secret: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    session_ttl_s: int = SESSION_TTL_S
    cookie_secure: bool = False
    metrics_public: bool = False
    extra_job_types: list[str] = field(default_factory=list)
    redact_keys: frozenset[str] | None = None
    history_sample_s: float = HISTORY_SAMPLE_S
    memory_high_water: float = MEMORY_HIGH_WATER

    def check(self) -> None:
        """Refuse settings that would expose an unauthenticated server beyond this machine."""
        if self.insecure_local and not is_loopback(self.host):
            raise ConfigurationError(
                f"--insecure-local serves without authentication, so it only binds to loopback; "
                f"{self.host!r} is not a loopback address (use 127.0.0.1 or give --token)")
        if self.max_body_bytes < 1024:
            raise ConfigurationError("--max-body-bytes must be at least 1024")
        if self.receive_deadline_s <= 0:
            raise ConfigurationError("--receive-deadline must be positive")
        if not 0 < self.memory_high_water <= 1:
            raise ConfigurationError("the memory high-water mark must be in (0, 1]")

    def ensure_token(self) -> str | None:
        """When nothing grants access, make an admin token and return it (to print once)."""
        if self.tokens or self.insecure_local:
            return None
        secret = new_secret()
        self.tokens.append(parse_token(f"admin:{secret}"))
        return secret


def tokens_from_env() -> list[Token]:
    raw = os.environ.get("CONVEYOR_API_TOKENS", "")
    return [parse_token(part.strip()) for part in raw.split(",") if part.strip()]


def session_secret_from_env() -> bytes | None:
    raw = os.environ.get("CONVEYOR_SESSION_SECRET")
    return raw.encode() if raw else None
