"""Keyed hashes of customer ids (HMAC-SHA256): pseudonyms, erasure hashes, key fingerprints.

Three uses, each with its own domain prefix so that one value never doubles as another:

- `pseudonym(id)` = hex(HMAC-SHA256(key, "nightrec:pseudonym:" + id))[:32]: the id the store,
  caches, models and published rows carry when `privacy.pseudonymize` is on;
- `erasure_hash(id)` = hex(HMAC-SHA256(key, "nightrec:erased:" + id)): what the erasure log
  and the erasure list keep of an erased customer (never the id, never the pseudonym);
- `fingerprint` = hex(HMAC-SHA256(key, "nightrec:key-check"))[:16]: recorded in the store so
  a changed key is refused instead of silently mixing ids.

The key comes from `privacy.key` (env `NIGHTREC_PRIVACY__KEY`). Without one, erasure uses a
key generated once into `NIGHTREC_HOME/privacy.key` (mode 0600); pseudonyms need it set,
because the shop maps them back with it. The key is never logged nor written anywhere else.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from tasks.constants import OWNER_ONLY_UMASK
from tasks.errors import NightrecError
from tasks.settings import PrivacySettings

KEY_FILE = "privacy.key"
PSEUDONYM_DOMAIN = b"nightrec:pseudonym:"
ERASED_DOMAIN = b"nightrec:erased:"
FINGERPRINT_DOMAIN = b"nightrec:key-check"
PSEUDONYM_HEX = 32  # 128 bits: collisions are out of reach for any customer base


class PrivacyError(NightrecError):
    """A privacy setting or the store's id mode forbids what was asked."""

    hint = "see the README, section Privacy"


class MissingKey(PrivacyError):
    """Pseudonyms need a configured key."""

    hint = "export NIGHTREC_PRIVACY__KEY=<a long random secret>; keep it, it maps pseudonyms back"


@dataclass(frozen=True)
class PrivacyKey:
    """An HMAC key; its bytes never appear in a repr, a log line or a manifest."""

    secret: bytes = field(repr=False)
    origin: str  # "setting" (privacy.key) or the path of the generated key file

    def _mac(self, domain: bytes, text: str) -> str:
        return hmac.new(self.secret, domain + text.encode(), hashlib.sha256).hexdigest()

    def pseudonym(self, customer_id: str) -> str:
        return self._mac(PSEUDONYM_DOMAIN, customer_id)[:PSEUDONYM_HEX]

    def erasure_hash(self, customer_id: str) -> str:
        return self._mac(ERASED_DOMAIN, customer_id)

    @property
    def fingerprint(self) -> str:
        return self._mac(FINGERPRINT_DOMAIN, "")[:16]


def key_file(home: Path) -> Path:
    return home / KEY_FILE


def configured_key(privacy: PrivacySettings) -> PrivacyKey | None:
    if privacy.key is None or not privacy.key.get_secret_value():
        return None
    return PrivacyKey(privacy.key.get_secret_value().encode(), "setting")


def pseudonym_key(privacy: PrivacySettings) -> PrivacyKey | None:
    """The key of pseudonyms when `pseudonymize` is on (None when off); refuses without one."""
    if not privacy.pseudonymize:
        return None
    key = configured_key(privacy)
    if key is None:
        raise MissingKey("privacy.pseudonymize is on but no key is set (NIGHTREC_PRIVACY__KEY)")
    return key


def erasure_key(privacy: PrivacySettings, home: Path, create: bool = False) -> PrivacyKey | None:
    """The key of the erasure hashes: the configured one, else the generated key file
    (created with mode 0600 when `create`; None when there is none and `create` is off)."""
    key = configured_key(privacy)
    if key is not None:
        return key
    path = key_file(home)
    if path.is_file():
        return PrivacyKey(path.read_bytes().strip(), str(path))
    if not create:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_hex(32).encode()
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, secret + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return PrivacyKey(secret, str(path))


def secure_home(home: Path) -> None:
    """NIGHTREC_HOME readable by its owner only: created 0700, and an existing one whose
    group or others may read it is tightened to 0700 (the files inside are created under the
    entry points' umask 077)."""
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    mode = home.stat().st_mode & 0o777
    if mode & 0o077 and home.stat().st_uid == os.getuid():
        os.chmod(home, 0o700)


def owner_only_umask() -> None:
    """Files and folders created from here on are the owner's only (0600 / 0700). Called by
    the CLI and the flows when they start, never at import."""
    os.umask(OWNER_ONLY_UMASK)
