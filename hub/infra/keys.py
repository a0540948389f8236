"""The master key, and sealing with it (AES-256-GCM).

Every secret the hub keeps at rest is sealed under one master key: the
platforms' tokens (``connector_tokens``), the app secrets of the connectors file
(given as ``sealed:…`` values) and the keys of the data subjects
(``subject_keys``). The key comes from ``HUB_MASTER_KEY`` (32 bytes, base64;
``HUB_TOKEN_KEY``, its older name, is still read) or, when neither is set, from
``HUB_HOME/master.key``, which ``hub serve`` creates on its first start
(readable by the hub's user only, mode 0600). A key file others may read is
refused, so is a key that is not 32 bytes.

A sealed value is ``nonce (12 bytes) + ciphertext + tag``; the associated data
names what is sealed (``token/youzan/42001``, ``subject/…``), so a sealed value
copied to another row does not open.
"""

from __future__ import annotations

import base64
import binascii
import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

if TYPE_CHECKING:
    from hub.infra.shops import ConnectorsConfig

#: The setting holding the master key (32 bytes, base64).
MASTER_KEY_SETTING = "HUB_MASTER_KEY"
#: The older name of the setting (it sealed platform tokens only).
LEGACY_KEY_SETTING = "HUB_TOKEN_KEY"
#: The master key's file under ``HUB_HOME`` when no setting gives it.
KEY_FILE = "master.key"
#: The prefix of a sealed text value (a connectors file's app secret).
SEALED_PREFIX = "sealed:"

_NONCE_BYTES = 12
_KEY_BYTES = 32


class MasterKeyError(RuntimeError):
    """The master key cannot be had; the message names the setting or file."""


class SealError(ValueError):
    """A sealed value does not open with this key (another key, or moved)."""


def decode_key(raw: str, where: str) -> bytes:
    """32 key bytes from their base64 text.

    Raises:
        MasterKeyError: not base64, or not 32 bytes (names ``where``).
    """
    try:
        key = base64.b64decode(raw.strip(), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != _KEY_BYTES:
        raise MasterKeyError(
            f"{where}: must be 32 bytes in base64 (e.g. from "
            "`python -c 'import os,base64;print(base64.b64encode(os.urandom(32))"
            ".decode())'`)"
        )
    return key


def encode_key(key: bytes) -> str:
    """The base64 text of a key (what the key file and the setting hold)."""
    return base64.b64encode(key).decode()


def configured_key(env: Mapping[str, str] | None = None) -> bytes | None:
    """The master key a setting gives (``HUB_MASTER_KEY``, else ``HUB_TOKEN_KEY``).

    Raises:
        MasterKeyError: the setting's value is not a 32-byte key.
    """
    env = os.environ if env is None else env
    for setting in (MASTER_KEY_SETTING, LEGACY_KEY_SETTING):
        raw = env.get(setting, "")
        if raw:
            return decode_key(raw, setting)
    return None


def read_key_file(path: Path) -> bytes:
    """The key in ``path``, refused when others than its owner may read it.

    Raises:
        MasterKeyError: unreadable, readable by group or others, or not a key.
    """
    try:
        mode = path.stat().st_mode
        raw = path.read_text()
    except OSError as exc:
        raise MasterKeyError(
            f"master key file {path}: cannot read it ({exc.strerror or exc})"
        ) from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise MasterKeyError(
            f"master key file {path}: mode {stat.S_IMODE(mode):04o} lets others "
            f"read it; run `chmod 600 {path}`"
        )
    return decode_key(raw, f"master key file {path}")


def master_key(
    home: Path, env: Mapping[str, str] | None = None, *, create: bool = True
) -> bytes:
    """The master key: from the setting, else ``home/master.key``.

    Args:
        home: ``HUB_HOME``; claimed as the hub's data folder when the key file
            is created there.
        env: The environment (default ``os.environ``).
        create: Create the key file (mode 0600) when it does not exist.

    Raises:
        MasterKeyError: a bad setting, a bad or exposed file, or no key and
            ``create`` false.
    """
    key = configured_key(env)
    if key is not None:
        return key
    path = home.expanduser() / KEY_FILE
    if path.exists():
        return read_key_file(path)
    if not create:
        raise MasterKeyError(
            f"no master key: set {MASTER_KEY_SETTING} or start `hub serve` once "
            f"to create {path}"
        )
    from hub.infra.embedded import claim_home

    path = claim_home(home) / KEY_FILE
    key = os.urandom(_KEY_BYTES)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first: use that one
        return read_key_file(path)
    with os.fdopen(fd, "w") as out:
        out.write(encode_key(key) + "\n")
    return key


class Sealer:
    """AES-256-GCM under one key; the associated data names what is sealed.

    Args:
        key: 32 bytes.
    """

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    def seal(self, plain: bytes, context: str) -> bytes:
        """``plain`` sealed, bound to ``context``."""
        nonce = os.urandom(_NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, plain, context.encode())

    def open(self, blob: bytes, context: str) -> bytes:
        """The plain bytes of ``blob``.

        Raises:
            SealError: sealed under another key or another context.
        """
        try:
            return self._aead.decrypt(
                blob[:_NONCE_BYTES], blob[_NONCE_BYTES:], context.encode()
            )
        except (InvalidTag, ValueError):
            raise SealError(
                f"{context}: does not open with this key (sealed with another "
                "key, or for something else)"
            ) from None

    def seal_text(self, text: str, context: str) -> str:
        """``sealed:`` + base64 of ``text`` sealed (for JSON files)."""
        blob = self.seal(text.encode(), context)
        return SEALED_PREFIX + base64.b64encode(blob).decode()

    def open_text(self, value: str, context: str) -> str:
        """The text of a ``sealed:`` value; any other value as it is.

        Raises:
            SealError: a sealed value that does not open here.
        """
        if not value.startswith(SEALED_PREFIX):
            return value
        try:
            blob = base64.b64decode(value[len(SEALED_PREFIX) :], validate=True)
        except (binascii.Error, ValueError):
            raise SealError(f"{context}: a sealed: value is not base64") from None
        return self.open(blob, context).decode()


def credential_context(platform: str, shop_id: str, name: str) -> str:
    """What a connectors file's sealed credential is bound to."""
    return f"credential/{platform}/{shop_id}/{name}"


def open_credentials(config: ConnectorsConfig, key: bytes | None) -> ConnectorsConfig:
    """``config`` with every ``sealed:`` credential opened with ``key``.

    Raises:
        SealError: a sealed credential and no key, or one that does not open
            (the message names the shop and the credential).
    """
    sealer = Sealer(key) if key is not None else None
    shops = []
    for shop in config.shops:
        opened: dict[str, str] = {}
        for name, value in shop.credentials.items():
            context = credential_context(shop.platform, shop.shop_id, name)
            if value.startswith(SEALED_PREFIX) and sealer is None:
                raise SealError(
                    f"{context}: is sealed; set {MASTER_KEY_SETTING} or keep "
                    f"{KEY_FILE} in HUB_HOME"
                )
            opened[name] = value if sealer is None else sealer.open_text(value, context)
        shops.append(msgspec.structs.replace(shop, credentials=opened))
    return msgspec.structs.replace(config, shops=tuple(shops))
