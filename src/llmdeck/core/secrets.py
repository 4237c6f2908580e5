"""Secrets at rest: hashed passwords and API keys, encrypted provider keys."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from cryptography.fernet import Fernet, InvalidToken

from llmdeck.core.errors import LLMDeckError
from llmdeck.core.settings import Settings

_hasher = PasswordHasher()
API_KEY_PREFIX = "ldk-"


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def new_api_key() -> str:
    """A random API key: 256 bits, URL-safe."""
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def hash_api_key(key: str) -> str:
    # API keys carry 256 random bits, so a fast hash is safe here and keeps auth cheap;
    # slow hashes (argon2) exist for low-entropy human passwords.
    return hashlib.sha256(key.encode()).hexdigest()


def _secret_key(settings: Settings) -> bytes:
    if settings.secret_key is not None:
        raw = settings.secret_key.get_secret_value().encode()
        return base64.urlsafe_b64encode(hashlib.sha256(raw).digest())
    if not settings.is_sqlite:
        raise LLMDeckError(
            "LLMDECK_SECRET_KEY is not set: with a shared database every server must use "
            "the same key to read stored provider keys. Set it to a long random string."
        )
    path = Path(settings.home) / "secret.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written aside, then linked into place: server processes starting together must
        # never read a half-written key, and the first link wins.
        draft = path.with_name(f".secret.key.{os.getpid()}")
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(Fernet.generate_key())
        try:
            os.link(draft, path)
        except FileExistsError:  # another process created it first
            pass
        finally:
            draft.unlink()
    return path.read_bytes().strip()


def derived_key(settings: Settings, purpose: str) -> bytes:
    """A key for one purpose (e.g. signing console cookies), derived from the platform secret.

    Deriving per purpose means a value signed for one use can never be replayed as another.
    """
    return hmac.new(_secret_key(settings), f"llmdeck:{purpose}".encode(), hashlib.sha256).digest()


def encrypt(settings: Settings, plaintext: str) -> str:
    return Fernet(_secret_key(settings)).encrypt(plaintext.encode()).decode()


def decrypt(settings: Settings, token: str) -> str:
    try:
        return Fernet(_secret_key(settings)).decrypt(token.encode()).decode()
    except InvalidToken:
        raise LLMDeckError(
            "A stored provider key cannot be decrypted: LLMDECK_SECRET_KEY differs from the "
            "one it was stored with. Restore that key or add the model's key again."
        ) from None
