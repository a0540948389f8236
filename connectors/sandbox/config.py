"""The sandbox's configuration: where it listens, its seed, its faults."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

Rate = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]

#: A fault the sandbox can inject into an API call.
FaultKind = Literal["5xx", "rate_limit", "timeout", "token_expired"]

#: The platforms the sandbox speaks.
PLATFORMS: tuple[str, ...] = ("wechat_shop", "douyin_shop", "kuaishou_shop", "youzan")


class FaultConfig(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True
):
    """How often the sandbox misbehaves, per platform.

    Call faults (drawn once per API call, token endpoints excepted):

    * ``error_5xx_rate``: HTTP 503 before anything is applied;
    * ``rate_limit_rate``: the platform's rate-limit answer, nothing applied;
    * ``timeout_rate``: the change *is* applied, then the answer is held for
      ``timeout_delay_s`` (the client times out and must retry safely);
    * ``token_expiry_rate``: the caller's token expires now and the call is
      answered with the platform's expiry code.

    Push faults (drawn once per push): ``duplicate_push_rate`` sends it twice;
    ``out_of_order_push_rate`` holds it back until after the next push.
    """

    error_5xx_rate: Rate = 0.0
    rate_limit_rate: Rate = 0.0
    timeout_rate: Rate = 0.0
    timeout_delay_s: Annotated[float, msgspec.Meta(ge=0.0, le=60.0)] = 1.0
    token_expiry_rate: Rate = 0.0
    duplicate_push_rate: Rate = 0.0
    out_of_order_push_rate: Rate = 0.0

    def __post_init__(self) -> None:
        """Refuse call-fault rates that add up to more than 1."""
        total = (
            self.error_5xx_rate
            + self.rate_limit_rate
            + self.timeout_rate
            + self.token_expiry_rate
        )
        if total > 1.0:
            raise ValueError(f"call fault rates add up to {total:.3f} > 1")


class ApiBudget(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How many API calls a platform allows each shop: a token bucket.

    ``rate_per_s`` calls a second on average and bursts of up to ``burst``;
    a call beyond them is answered with the platform's rate-limit answer and
    nothing is applied (a refusal of the budget, counted apart from the
    injected ``rate_limit`` faults). Token endpoints are not counted.
    """

    rate_per_s: Annotated[float, msgspec.Meta(gt=0.0)]
    burst: Annotated[int, msgspec.Meta(ge=1)] = 1


class SandboxConfig(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True
):
    """Everything the sandbox needs to start.

    ``webhooks`` maps a platform code to the hub URL its pushes go to (a shop
    may name its own); ``seed`` makes faults and generated ids reproducible;
    ``faults`` applies to every platform unless ``platform_faults`` names one;
    ``budgets`` limits each shop of a platform to its API budget (a platform
    not named has none).
    """

    host: str = "127.0.0.1"
    port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 0
    seed: int = 0
    faults: FaultConfig = FaultConfig()
    platform_faults: dict[str, FaultConfig] = {}
    webhooks: dict[str, str] = {}
    budgets: dict[str, ApiBudget] = {}
    push_timeout_s: float = 3.0

    def faults_for(self, platform: str) -> FaultConfig:
        """The fault rates of one platform.

        Args:
            platform: The platform code.

        Returns:
            Its own rates, or the shared ones.
        """
        return self.platform_faults.get(platform, self.faults)
