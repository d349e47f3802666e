"""Check a password against a role's SCRAM-SHA-256 verifier in PostgreSQL.

The test server trusts every TCP login, so logging in proves nothing about a password.
The verifier PostgreSQL stores does: ``pg_authid.rolpassword`` is
``SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`` (base64 parts), and a
password matches when ``SHA-256(HMAC-SHA-256(SaltedPassword, "Client Key")) == StoredKey``
with ``SaltedPassword = PBKDF2-HMAC-SHA-256(password, salt, iterations)`` (RFC 5802,
RFC 7677). PostgreSQL SASLprep-normalises the password first, which leaves the ASCII
passwords of these tests unchanged.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

import psycopg


def stored_verifier(admin_url: str, role: str) -> str | None:
    """``rolpassword`` of ``role`` (needs a superuser connection), or None if it has none."""
    with psycopg.connect(admin_url) as conn:
        row = conn.execute(
            "SELECT rolpassword FROM pg_authid WHERE rolname = %s", (role,)
        ).fetchone()
    if row is None:
        raise LookupError(f"no role {role!r}")
    return row[0]


def scram_matches(verifier: str, password: str) -> bool:
    """Whether ``password`` produces the StoredKey of a SCRAM-SHA-256 ``verifier``."""
    mechanism, _, rest = verifier.partition("$")
    if mechanism != "SCRAM-SHA-256":
        raise ValueError(f"not a SCRAM-SHA-256 verifier: {mechanism!r}")
    iterations_salt, _, keys = rest.partition("$")
    iterations, _, salt = iterations_salt.partition(":")
    stored_key, _, _server_key = keys.partition(":")
    salted = hashlib.pbkdf2_hmac(
        "sha256", password.encode(), base64.b64decode(salt), int(iterations)
    )
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    return hmac.compare_digest(hashlib.sha256(client_key).digest(), base64.b64decode(stored_key))


def password_matches(admin_url: str, role: str, password: str) -> bool:
    """Whether ``password`` is ``role``'s current PostgreSQL password."""
    verifier = stored_verifier(admin_url, role)
    return verifier is not None and scram_matches(verifier, password)
