"""The CRM transfer is sealed and signed: only the key's holder reads it."""

from __future__ import annotations

import os

import pytest

from connectors.crm import CrmProtocolError, open_profile, seal_profile


def test_a_sealed_profile_opens_with_the_shared_key_and_hides_its_fields() -> None:
    key = os.urandom(32)
    body, signature = seal_profile(key, "crm_1", {"phone": "13644445555"})
    assert b"13644445555" not in body
    assert open_profile(key, body, signature) == ("crm_1", {"phone": "13644445555"})


def test_a_tampered_body_or_another_key_is_refused() -> None:
    key = os.urandom(32)
    body, signature = seal_profile(key, "crm_1", {"name": "王五岳"})
    with pytest.raises(CrmProtocolError, match="X-Hub-Signature"):
        open_profile(key, body.replace(b"crm_1", b"crm_2"), signature)
    with pytest.raises(CrmProtocolError, match="X-Hub-Signature"):
        open_profile(os.urandom(32), body, signature)
