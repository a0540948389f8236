"""Profiles transferred to the merchant's CRM, encrypted and signed (Kuaishou's mode).

Under ``encrypted_transfer_to_crm`` the hub keeps no personal field of the
buyer: the order's sealed buyer carries only the subject and the delivery's
reference, and the profile goes to the CRM (``connectors/crm.py`` says how it
is sealed and signed). Until the CRM has it, the profile waits in
``crm_deliveries`` sealed under the subject's key, so an erasure also erases a
profile not yet sent; once delivered it is removed and the row is the delivery
record (reference, attempts, outcome). A delivery that fails is retried; after
``max_attempts`` it is dead-lettered (``status = 'dead'``, its sealed profile
kept for an operator's retry).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import msgspec
import psycopg

from connectors.crm import SIGNATURE_HEADER, seal_profile
from domain.events import derive_id
from hub.infra.keys import Sealer, SealError
from hub.infra.subjects import SubjectKeys

log = logging.getLogger(__name__)

DEFAULT_MAX_ATTEMPTS = 5


def crm_ref_of(platform: str, order_id: str) -> str:
    """The delivery reference of an order's profile (stable: one per order)."""
    return "crm_" + derive_id("crm_delivery", platform, order_id).hex


@dataclass
class DeliveryReport:
    """What one round of deliveries did."""

    delivered: int = 0
    failed: int = 0
    dead: int = 0
    erased: int = 0


class CrmOutbox:
    """Keeps and sends the profiles bound for the CRM.

    Args:
        database_url: PostgreSQL holding ``crm_deliveries`` (migrated).
        keys: The subjects' keys (a waiting profile is sealed under them).
        url: The CRM's root; profiles go to ``{url}/profiles``.
        key: The key shared with the CRM (32 bytes).
        max_attempts: Attempts before a delivery is dead-lettered.
        retry_after_s: The wait between rounds while deliveries are pending
            (doubled each round, up to ten minutes).
        sleep: The wait (tests pass their own).
        background: Send at once and retry in a background task after each
            new profile (False: only :meth:`deliver_pending` sends).
        timeout_s: The time one call may take.
    """

    def __init__(
        self,
        database_url: str,
        keys: SubjectKeys,
        *,
        url: str,
        key: bytes,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        retry_after_s: float = 5.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        background: bool = True,
        timeout_s: float = 10.0,
    ) -> None:
        self.database_url = database_url
        self.keys = keys
        self.url = url.rstrip("/")
        self._key = key
        self.max_attempts = max_attempts
        self.retry_after_s = retry_after_s
        self._sleep = sleep
        self._background = background
        self._timeout_s = timeout_s
        self._task: asyncio.Task[None] | None = None

    def _connect(self) -> Any:
        return psycopg.AsyncConnection.connect(self.database_url, autocommit=True)

    async def enqueue(
        self,
        *,
        crm_ref: str,
        subject_id: str,
        platform: str,
        shop_id: str,
        order_id: str,
        fields: dict[str, str],
    ) -> None:
        """Keep one profile for the CRM (once per reference) and send it soon."""
        version, key = await self.keys.current(subject_id)
        profile = {
            "subject_id": subject_id,
            "platform": platform,
            "shop_id": shop_id,
            "order_id": order_id,
            **fields,
        }
        payload = Sealer(key).seal(msgspec.json.encode(profile), f"crm/{crm_ref}")
        async with await self._connect() as conn:
            await conn.execute(
                "INSERT INTO crm_deliveries (crm_ref, subject_id, platform, shop_id, "
                "platform_order_id, key_version, payload) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                (crm_ref, subject_id, platform, shop_id, order_id, version, payload),
            )
        self.resume()

    def resume(self) -> None:
        """Send what is pending in the background (at start: what an earlier
        process left), retrying until nothing is pending."""
        if self._background and (self._task is None or self._task.done()):
            self._task = asyncio.get_running_loop().create_task(self._retry())

    async def _retry(self) -> None:
        wait = self.retry_after_s
        while True:
            try:
                report = await self.deliver_pending()
            except (OSError, psycopg.Error) as exc:
                log.warning("crm deliveries: round failed (%s)", type(exc).__name__)
                report = DeliveryReport(failed=1)
            if not report.failed:
                return
            await self._sleep(wait)
            wait = min(wait * 2, 600.0)

    async def aclose(self) -> None:
        """Stop the background retries (pending deliveries stay pending)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def deliver_pending(self) -> DeliveryReport:
        """Send every pending profile once; record each outcome."""
        report = DeliveryReport()
        async with await self._connect() as conn:
            cur = await conn.execute(
                "SELECT crm_ref, subject_id, key_version, payload, attempts "
                "FROM crm_deliveries WHERE status = 'pending' ORDER BY created_at"
            )
            rows = await cur.fetchall()
            async with httpx.AsyncClient(timeout=self._timeout_s) as http:
                for ref, subject_id, version, payload, attempts in rows:
                    outcome = await self._deliver(
                        http, str(ref), str(subject_id), int(version), bytes(payload)
                    )
                    await self._record(conn, str(ref), int(attempts), outcome, report)
        return report

    async def _deliver(
        self,
        http: httpx.AsyncClient,
        ref: str,
        subject_id: str,
        version: int,
        payload: bytes,
    ) -> str:
        """``delivered``, ``erased`` or the error of this attempt."""
        key = (await self.keys.versions(subject_id)).get(version)
        if key is None:
            return "erased"
        try:
            profile = msgspec.json.decode(Sealer(key).open(payload, f"crm/{ref}"))
        except SealError:
            return "erased"
        body, signature = seal_profile(self._key, ref, profile)
        try:
            answer = await http.post(
                f"{self.url}/profiles",
                content=body,
                headers={
                    SIGNATURE_HEADER: signature,
                    "Content-Type": "application/json",
                },
            )
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}"
        if answer.status_code == 200:
            return "delivered"
        return f"HTTP {answer.status_code}"

    async def _record(
        self,
        conn: psycopg.AsyncConnection[Any],
        ref: str,
        attempts: int,
        outcome: str,
        report: DeliveryReport,
    ) -> None:
        tried = attempts + 1
        if outcome in ("delivered", "erased"):
            status, error = outcome, ""
            if outcome == "delivered":
                report.delivered += 1
            else:
                report.erased += 1
        elif tried >= self.max_attempts:
            status, error = "dead", outcome
            report.dead += 1
            log.warning("crm delivery %s dead-lettered after %d attempts", ref, tried)
        else:
            status, error = "pending", outcome
            report.failed += 1
        keep = status in ("pending", "dead")
        await conn.execute(
            "UPDATE crm_deliveries SET status = %s, attempts = %s, last_error = %s, "
            "payload = CASE WHEN %s THEN payload END, updated_at = now() "
            "WHERE crm_ref = %s",
            (status, tried, error, keep, ref),
        )
