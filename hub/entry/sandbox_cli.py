"""The ``hub sandbox`` verb: run the sandbox platforms in the foreground.

Wire it into ``hub/entry/cli.py``'s ``build_parser`` with
``add_sandbox_parser(verbs)``. Ctrl-C or SIGTERM stops it.
"""

from __future__ import annotations

import argparse
import logging
import socket
import sys
from pathlib import Path
from typing import Any

import msgspec

log = logging.getLogger(__name__)

#: The default port of ``hub sandbox`` (the hub's own HTTP port is 8780).
DEFAULT_PORT = 8790


def add_sandbox_parser(verbs: Any) -> argparse.ArgumentParser:
    """Add the ``sandbox`` verb to the ``hub`` sub-parsers.

    Args:
        verbs: The object ``ArgumentParser.add_subparsers`` returned.

    Returns:
        The verb's parser.
    """
    parser = verbs.add_parser(
        "sandbox",
        help="run the sandbox shop platforms (WeChat, Douyin, Kuaishou, Youzan)",
        description=(
            "Serve the four platform simulators on one port, with the test-control "
            "API under /_sandbox (docs/sandbox.md)."
        ),
    )
    parser.add_argument("--host", default="127.0.0.1", help="address (loopback)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="0: any free")
    parser.add_argument("--seed", type=int, default=0, help="fault and id seed")
    parser.add_argument(
        "--webhook",
        action="append",
        default=[],
        metavar="PLATFORM=URL",
        help="where a platform's pushes go, e.g. douyin_shop=http://127.0.0.1:8780/"
        "webhooks/douyin_shop (repeat)",
    )
    parser.add_argument(
        "--config",
        type=Path,
        help="a SandboxConfig as JSON (flags given on the command line win)",
    )
    parser.set_defaults(func=cmd_sandbox)
    assert isinstance(parser, argparse.ArgumentParser)
    return parser


def sandbox_config(args: argparse.Namespace) -> Any:
    """The :class:`connectors.sandbox.SandboxConfig` the arguments describe.

    Args:
        args: The parsed ``hub sandbox`` arguments.

    Returns:
        The configuration.

    Raises:
        ValueError: If ``--config`` is not a valid SandboxConfig or a
            ``--webhook`` is not ``PLATFORM=URL`` with a known platform.
    """
    from connectors.sandbox import PLATFORMS, SandboxConfig

    base = SandboxConfig()
    if args.config is not None:
        try:
            base = msgspec.json.decode(args.config.read_bytes(), type=SandboxConfig)
        except (OSError, msgspec.DecodeError, ValueError) as exc:
            raise ValueError(f"--config {args.config}: {exc}") from None
    webhooks = dict(base.webhooks)
    for item in args.webhook:
        platform, sep, url = item.partition("=")
        if not sep or platform not in PLATFORMS or not url:
            raise ValueError(
                f"--webhook {item!r}: expected PLATFORM=URL with PLATFORM one of "
                f"{', '.join(PLATFORMS)}"
            )
        webhooks[platform] = url
    return msgspec.structs.replace(
        base, host=args.host, port=args.port, seed=args.seed, webhooks=webhooks
    )


def cmd_sandbox(settings: object, args: argparse.Namespace) -> int:
    """Run the sandbox until interrupted.

    Args:
        settings: The hub settings (unused: the sandbox needs none).
        args: The parsed arguments.

    Returns:
        The exit status.
    """
    import uvicorn

    from connectors.sandbox import create_app

    try:
        config = sandbox_config(args)
    except ValueError as exc:
        print(f"hub: error: {exc}", file=sys.stderr)
        return 2
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((config.host, config.port))
        # Listen now, so the URL printed below accepts connections at once.
        sock.listen(128)
    except OSError as exc:
        sock.close()
        print(
            f"hub: error: cannot listen on {config.host}:{config.port} "
            f"({exc.strerror or exc}); choose another with --port",
            file=sys.stderr,
        )
        return 2
    port = sock.getsockname()[1]
    print(f"sandbox: http://{config.host}:{port} (control API /_sandbox)", flush=True)
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(config), log_level="warning", timeout_graceful_shutdown=2
        )
    )
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        # uvicorn re-raises the Ctrl-C it handled, after a clean shutdown.
        pass
    finally:
        sock.close()
    return 0


class SandboxProcess:
    """``hub sandbox --port 0`` as a child process of this one.

    The sandbox gets a core of its own (it shares no interpreter lock with the
    hub), and dies with its parent even when that is killed with SIGKILL.
    """

    def __init__(self, seed: int = 0) -> None:
        """Prepare a child sandbox with fault and id ``seed``."""
        self.seed = seed
        self.url = ""
        self.process: Any = None
        self._drain: Any = None

    async def start(self, timeout_s: float = 30.0) -> str:
        """Start it; return its URL once it printed it and answers there."""
        import asyncio
        import re
        import signal

        from connectors.sandbox.control_client import SandboxControl
        from hub.infra.embedded import parent_death_signal

        self.process = process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "hub.entry.cli",
            "sandbox",
            "--port",
            "0",
            "--seed",
            str(self.seed),
            stdout=asyncio.subprocess.PIPE,
            preexec_fn=parent_death_signal(signal.SIGTERM),
        )
        assert process.stdout is not None
        async with asyncio.timeout(timeout_s):
            line = (await process.stdout.readline()).decode()
            found = re.search(r"sandbox: (http://\S+)", line)
            if found is None:
                raise RuntimeError(
                    f"hub sandbox exited ({process.returncode}) or printed {line!r}"
                )
            self.url = found[1]
            self._drain = asyncio.create_task(_drain(process.stdout))
            control = SandboxControl(self.url)
            try:
                await control.health()
            finally:
                await control.aclose()
        return self.url

    async def stop(self, timeout_s: float = 15.0) -> None:
        """SIGTERM, SIGKILL after ``timeout_s``; return once it is gone."""
        import asyncio
        import signal

        from hub.infra.runtime import cancel_and_wait

        process = self.process
        if process is not None and process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(timeout_s):
                    await process.wait()
            except TimeoutError:
                process.kill()
                await process.wait()
        await cancel_and_wait(self._drain)
        self._drain = None


async def _drain(stdout: Any) -> None:
    """Keep reading a child's stdout (a full pipe would stall it), logged."""
    while line := await stdout.readline():
        log.info("sandbox: %s", line.decode().rstrip())
