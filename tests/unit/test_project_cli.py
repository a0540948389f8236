"""``hub project``'s options: the read models' linger (parsing only; the
worker itself runs in the integration and crash tests)."""

from __future__ import annotations

import pytest

from hub.entry.cli import build_parser
from projections.base import LINGER_S, READ_MODEL_LINGER_S


def test_a_read_model_worker_lingers_longer_than_the_hubs_own_runners() -> None:
    args = build_parser().parse_args(["project"])
    assert args.linger is None  # cmd_project then uses READ_MODEL_LINGER_S
    assert READ_MODEL_LINGER_S > LINGER_S


def test_the_linger_can_be_set_and_zero_reads_at_once() -> None:
    assert build_parser().parse_args(["project", "--linger", "0"]).linger == 0.0
    args = build_parser().parse_args(["project", "orders", "--linger", "0.1"])
    assert (args.names, args.linger) == (["orders"], 0.1)


@pytest.mark.parametrize(
    ("value", "rule"),
    [
        ("-1", "must be 0 or more seconds, got -1"),
        ("nan", "must be 0 or more seconds, got nan"),
        ("inf", "must be 0 or more seconds, got inf"),
        ("soon", "must be a number of seconds, got 'soon'"),
    ],
)
def test_a_bad_linger_is_refused_naming_the_option_and_the_rule(
    value: str, rule: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["project", "--linger", value])
    assert f"argument --linger: {rule}" in capsys.readouterr().err
