"""Test helpers: the real daemon as a subprocess, and a real UDP OSC client.

Both come from the package (deepdrummer_live.testing and deepdrummer_live.client, which the pytest
plugin uses too: one way to start a daemon in tests). What is here only keeps the names and the
list-shaped answers the suite was written with.
"""

from __future__ import annotations

import time
from pathlib import Path

from deepdrummer_live import client as dd_client
from deepdrummer_live import testing
from deepdrummer_live.client import encode
from deepdrummer_live.testing import daemon_command, free_tcp_port, free_udp_port, wait_for  # noqa: F401

REPO = Path(__file__).resolve().parents[1]
CLI = daemon_command()
EXTERNAL_KIT = REPO.parent / "shared" / "external-kits" / "deepdrummer-paper"


def build(address: str, *args, types: str | None = None) -> bytes:
    return encode(address, *args, types=types)


class OscClient(dd_client.OscClient):
    """deepdrummer_live.client.OscClient as the suite uses it: `port` is the client's own (receiving) port,
    answers are lists, and a wait that fails raises TimeoutError (10 s by default)."""

    def __init__(self, port: int, host: str = "127.0.0.1"):
        super().__init__(port, host)
        self.port = self.local_port

    def recv(self, timeout: float = 10.0) -> tuple[str, list]:
        """The next message in arrival order, whatever its address."""
        m = self.receive(timeout)
        if m is None:
            raise dd_client.NoReply(f"nothing within {timeout:g} s")
        return m.address, list(m.args)

    def expect(self, address: str, timeout: float = 10.0, where=None) -> list:
        """The next message with `address`; others are kept for later `expect`s."""
        return list(super().expect(address, timeout, where))

    def received(self) -> list[tuple[str, list]]:
        """What has arrived so far (kept by `expect` or waiting in the socket), without waiting.

        A negative check ("no /dd/rated came") is only sound after a barrier: a reply that the
        daemon sends after anything the checked message could have caused (e.g. /dd/ping)."""
        return self.drain(0.0)

    def drain(self, wait: float = 0.2) -> list[tuple[str, list]]:
        """Everything kept and arriving until nothing more comes for `wait` seconds (0: no waiting)."""
        return [(m.address, list(m.args)) for m in super().drain(wait)]


def wait_train_steps(client: OscClient, above: int, timeout: float = 300.0) -> int:
    """/dd/status's train_steps once it is above `above`, polled with a deadline (the critic first
    learns to hear the kit, then trains on ratings: minutes on a busy CPU)."""
    seen = []

    def trained() -> bool:
        client.send("/dd/status")
        seen.append(client.expect("/dd/status")[5])
        return seen[-1] > above

    wait_for(trained, timeout, lambda: f"train_steps > {above} (still {seen[-1] if seen else '?'})", interval=0.2)
    return seen[-1]


def playhead(web_port: int, until, what: str, timeout: float = 30.0) -> list[tuple[int, bool]]:
    """The daemon's playhead as its rating page sees it (a WebSocket to `--web-port`): the (step, playing)
    of the hello and of every snapshot and step pushed after it, until `until(seen)` holds; AssertionError
    naming `what` after `timeout` s. The page is pushed the playhead a dozen times a second."""
    import asyncio
    import json

    import aiohttp

    seen: list[tuple[int, bool]] = []

    async def watch() -> bool:
        async with aiohttp.ClientSession() as http, http.ws_connect(f"http://127.0.0.1:{web_port}/ws") as ws:
            deadline = time.monotonic() + timeout
            while (left := deadline - time.monotonic()) > 0:
                try:
                    frame = await ws.receive(timeout=left)
                except TimeoutError:
                    break
                if frame.type != aiohttp.WSMsgType.TEXT:
                    break  # the page was closed (the daemon went away)
                msg = json.loads(frame.data)
                snap = msg.get("snapshot", msg)  # hello and snapshot carry a snapshot; step carries its fields
                if msg["type"] in ("hello", "snapshot", "step"):
                    seen.append((snap["step"], bool(snap["playing"])))
                    if until(seen):
                        return True
        return False

    assert asyncio.run(watch()), f"timed out after {timeout:g} s waiting for {what}; playhead seen: {seen[-40:]}"
    return seen


def a_loop_played(seen: list[tuple[int, bool]]) -> bool:
    """A `playhead` condition: the playing playhead came round to the loop's start again (so the whole
    loop was played once, and its first bar line has passed)."""
    return any(p and q and t < s for (s, p), (t, q) in zip(seen, seen[1:]))


def stopped(seen: list[tuple[int, bool]]) -> bool:
    """A `playhead` condition: the transport is stopped."""
    return not seen[-1][1]


def start_with_client(state_dir: Path, *extra: str, **kw) -> tuple[Daemon, OscClient]:
    """A started daemon with a subscribed client (--notify), its startup messages drained."""
    client = OscClient(0)
    d = Daemon(state_dir, *extra, client=client, **kw)
    try:
        d.start()
    except BaseException:
        client.close()
        raise
    client.drain()
    return d, client


class Daemon(testing.Daemon):
    """`deepdrummer-live run --headless` on a free port and a state dir, run from the repo (this checkout's
    code); stop() sends SIGTERM. See deepdrummer_live.testing.Daemon."""

    def __init__(self, state_dir: Path, *extra: str, **kw):
        kw.setdefault("cwd", REPO)
        super().__init__(state_dir, *extra, **kw)
