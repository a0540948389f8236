"""Settings for a NATS cluster: the stream's replicas and a list of servers."""

from __future__ import annotations

import pytest

from hub.infra.settings import Settings, SettingsError, nats_servers


def test_stream_replicas_default_to_one() -> None:
    assert Settings.from_env({}).stream_replicas == 1


def test_stream_replicas_read_from_the_environment() -> None:
    assert Settings.from_env({"HUB_STREAM_REPLICAS": "3"}).stream_replicas == 3


@pytest.mark.parametrize("raw", ["0", "6", "three", "-1"])
def test_stream_replicas_outside_one_to_five_refused_naming_the_setting(
    raw: str,
) -> None:
    with pytest.raises(SettingsError, match=rf"HUB_STREAM_REPLICAS='{raw}': .* 1 to 5"):
        Settings.from_env({"HUB_STREAM_REPLICAS": raw})


def test_nats_url_lists_a_clusters_nodes_separated_by_commas() -> None:
    url = "nats://10.0.0.1:4222, nats://10.0.0.2:4222,nats://10.0.0.3:4222,"
    assert nats_servers(url) == [
        "nats://10.0.0.1:4222",
        "nats://10.0.0.2:4222",
        "nats://10.0.0.3:4222",
    ]


def test_nats_url_of_one_server_is_a_list_of_one() -> None:
    assert nats_servers("nats://127.0.0.1:4222") == ["nats://127.0.0.1:4222"]
