"""Secrets at rest and on the wire: password KDF, API key hashing, operator JWTs."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

import jwt

# scrypt with N=2^14, r=8, p=1 costs 16 MiB and ~50 ms per guess: the interactive-login
# parameters recommended by the scrypt paper and OWASP's password storage cheat sheet.
SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
SCRYPT_DKLEN = 32
SALT_BYTES = 16
API_KEY_PREFIX = "lok_"
# 32 random bytes: 256 bits, so a key can be stored as a plain SHA-256 hash.
API_KEY_BYTES = 32
JWT_ALGORITHM = "HS256"
JWT_ISSUER = "liveop"


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(SALT_BYTES)
    digest = hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=SCRYPT_DKLEN
    )
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, encoded: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = encoded.split("$")
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    expected = _unb64(digest)
    actual = hashlib.scrypt(
        password.encode("utf-8"), salt=_unb64(salt), n=int(n), r=int(r), p=int(p),
        dklen=len(expected),
    )  # fmt: skip
    return hmac.compare_digest(actual, expected)


# A password hash no password matches, checked when the email is unknown so that a login's
# timing does not reveal whether an account exists.
DUMMY_PASSWORD_HASH = hash_password(secrets.token_urlsafe(16))


def new_api_key() -> str:
    return API_KEY_PREFIX + secrets.token_urlsafe(API_KEY_BYTES)


def hash_api_key(key: str) -> str:
    """SHA-256 is enough here: keys are 256 random bits, so there is nothing to brute-force."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


# A token's own id: enough randomness that ids never collide among live tokens.
TOKEN_ID_BYTES = 12


@dataclass(frozen=True, slots=True)
class TokenClaims:
    account_id: str
    operator_id: int
    # The operator's token version when issued; raising it revokes the token.
    version: int = 0
    # Names this token alone, so that signing out revokes it and no other.
    token_id: str = ""
    # When the token expires (Unix seconds); set by read_token.
    expires: float = 0.0


class InvalidToken(Exception):
    pass


def issue_token(secret: str, claims: TokenClaims, ttl_s: int) -> tuple[str, float]:
    now = time.time()
    expires = now + ttl_s
    payload = {
        "iss": JWT_ISSUER,
        "sub": str(claims.operator_id),
        "acc": claims.account_id,
        "iat": int(now),
        "exp": int(expires),
        "ver": claims.version,
        "jti": secrets.token_urlsafe(TOKEN_ID_BYTES),
    }
    return jwt.encode(payload, secret, algorithm=JWT_ALGORITHM), expires


def read_token(secret: str, token: str) -> TokenClaims:
    try:
        payload = jwt.decode(
            token,
            secret,
            algorithms=[JWT_ALGORITHM],
            issuer=JWT_ISSUER,
            options={"require": ["exp", "sub", "iss"]},
        )
        # Tokens issued before revocation existed have neither: version 0, no id of their own.
        version = payload.get("ver", 0)
        if type(version) is not int:
            raise ValueError("ver must be an integer")
        return TokenClaims(
            account_id=str(payload["acc"]),
            operator_id=int(payload["sub"]),
            version=version,
            token_id=str(payload.get("jti", "")),
            expires=float(payload["exp"]),
        )
    except (jwt.PyJWTError, KeyError, ValueError) as exc:
        raise InvalidToken(str(exc)) from exc


# A device token proves that this client once logged in as this email: OWASP's "device
# cookie" defence against lockout, so that guesses from elsewhere cannot lock out a browser
# the operator has used before. 16 random bytes name the device; the MAC binds it to the email.
DEVICE_NONCE_BYTES = 16


def _device_mac(secret: str, email: str, nonce: str) -> str:
    message = f"device\n{email}\n{nonce}".encode()
    return _b64(hmac.new(secret.encode("utf-8"), message, hashlib.sha256).digest())


def issue_device_token(secret: str, email: str) -> str:
    nonce = secrets.token_urlsafe(DEVICE_NONCE_BYTES)
    return f"{nonce}.{_device_mac(secret, email, nonce)}"


def read_device_token(secret: str, email: str, token: str) -> str | None:
    """The device's nonce when ``token`` was issued for ``email`` with ``secret``."""
    nonce, _, mac = token.partition(".")
    expected = _device_mac(secret, email, nonce).encode()
    if not nonce or not hmac.compare_digest(mac.encode("utf-8", "replace"), expected):
        return None
    return nonce
