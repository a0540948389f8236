"""The master key is made once, kept private, and seals what the hub keeps."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from hub.infra.keys import (
    KEY_FILE,
    MasterKeyError,
    Sealer,
    SealError,
    credential_context,
    encode_key,
    master_key,
    open_credentials,
)
from hub.infra.shops import ConnectorsConfig, ShopConfig


def test_the_first_start_makes_a_private_key_file_and_later_starts_reuse_it(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    key = master_key(home, {})
    path = home / KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(key) == 32
    assert master_key(home, {}) == key


def test_a_key_file_others_may_read_is_refused(tmp_path: Path) -> None:
    master_key(tmp_path, {})
    os.chmod(tmp_path / KEY_FILE, 0o644)
    with pytest.raises(MasterKeyError, match="chmod 600"):
        master_key(tmp_path, {})


def test_the_setting_wins_over_the_file_and_is_checked(tmp_path: Path) -> None:
    given = os.urandom(32)
    assert master_key(tmp_path, {"HUB_MASTER_KEY": encode_key(given)}) == given
    assert not (tmp_path / KEY_FILE).exists()
    assert master_key(tmp_path, {"HUB_TOKEN_KEY": encode_key(given)}) == given
    with pytest.raises(MasterKeyError, match="HUB_MASTER_KEY: must be 32 bytes"):
        master_key(tmp_path, {"HUB_MASTER_KEY": "c2hvcnQ="})


def test_no_key_is_made_when_not_asked(tmp_path: Path) -> None:
    with pytest.raises(MasterKeyError, match="HUB_MASTER_KEY"):
        master_key(tmp_path, {}, create=False)


def test_a_sealed_value_opens_only_with_its_key_and_context() -> None:
    key = os.urandom(32)
    sealed = Sealer(key).seal_text("s3cret", "credential/youzan/1/client_secret")
    assert "s3cret" not in sealed
    assert Sealer(key).open_text(sealed, "credential/youzan/1/client_secret") == (
        "s3cret"
    )
    with pytest.raises(SealError, match="client_secret"):
        Sealer(os.urandom(32)).open_text(sealed, "credential/youzan/1/client_secret")
    with pytest.raises(SealError, match="credential/youzan/2"):
        Sealer(key).open_text(sealed, "credential/youzan/2/client_secret")


def _config(secret: str) -> ConnectorsConfig:
    return ConnectorsConfig(
        shops=(
            ShopConfig(
                platform="youzan",
                shop_id="42001",
                channel_account="acct",
                credentials={"client_id": "cid", "client_secret": secret},
            ),
        )
    )


def test_sealed_app_secrets_of_the_connectors_file_open_with_the_master_key() -> None:
    key = os.urandom(32)
    context = credential_context("youzan", "42001", "client_secret")
    config = _config(Sealer(key).seal_text("app-secret", context))
    opened = open_credentials(config, key)
    assert opened.shops[0].credentials == {
        "client_id": "cid",
        "client_secret": "app-secret",
    }
    with pytest.raises(SealError, match="youzan/42001/client_secret"):
        open_credentials(config, None)
    with pytest.raises(SealError, match="youzan/42001/client_secret"):
        open_credentials(config, os.urandom(32))


def test_reveal_needs_the_operators_key(tmp_path: Path) -> None:
    from hub.entry.profiles_cli import _check_operator_key
    from hub.infra.settings import SettingsError

    master = master_key(tmp_path / "home", {})
    with pytest.raises(SettingsError, match="--key-file"):
        _check_operator_key(None, master)
    other = tmp_path / "other.key"
    other.write_text(encode_key(os.urandom(32)))
    other.chmod(0o600)
    with pytest.raises(SettingsError, match="not the hub's master key"):
        _check_operator_key(other, master)
    _check_operator_key(tmp_path / "home" / KEY_FILE, master)
