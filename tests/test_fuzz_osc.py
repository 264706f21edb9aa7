"""Hostile OSC: thousands of seeded cases against ONE running daemon over real UDP, plus fast
in-process cases against osc.OscServer.handle_datagram with a fake session.

Every well-formed but bad /dd/ message must get exactly one /dd/error naming its address; garbage
gets nothing (or errors only); nothing changes state; /dd/ping answers at once afterwards.
"""

from __future__ import annotations

import contextlib
import random
import socket
import struct
import time

import pytest

from deepdrummer_live.errors import CommandError
from deepdrummer_live.learn.search import MODES
from deepdrummer_live.storage.library import check_name
from deepdrummer_live.surfaces import osc

from daemon import Daemon, OscClient

SEED = 1234
INBOUND = ["/dd/ping", "/dd/subscribe", "/dd/unsubscribe", "/dd/like", "/dd/dislike", "/dd/next", "/dd/undo",
           "/dd/mode", "/dd/fotf", "/dd/tempo", "/dd/play", "/dd/stop", "/dd/save", "/dd/status"]
NO_ARGS = ["/dd/ping", "/dd/next", "/dd/undo", "/dd/play", "/dd/stop", "/dd/status"]
FORBIDDEN = ("/dd/rated", "/dd/loop", "/dd/saved", "/dd/undone")


def pad(b: bytes) -> bytes:
    return b + b"\0" * (4 - len(b) % 4)


def raw_message(address: str, args: list[tuple[str, object]]) -> bytes:
    """An OSC message with any type tags (also ones our builder would refuse)."""
    tags, payload = ",", b""
    for tag, value in args:
        tags += tag
        if tag == "i":
            payload += struct.pack(">i", value)
        elif tag == "h":
            payload += struct.pack(">q", value)
        elif tag == "f":
            payload += struct.pack(">f", value)
        elif tag == "d":
            payload += struct.pack(">d", value)
        elif tag == "s":
            payload += pad(value.encode())
        elif tag == "b":
            payload += struct.pack(">i", len(value)) + value + b"\0" * (-len(value) % 4)
        elif tag in "cmr":
            payload += struct.pack(">I", value)
        elif tag == "t":
            payload += struct.pack(">Q", value)
        # T F N I [ ] carry no bytes
    return pad(address.encode()) + pad(tags.encode()) + payload


def bundle(*elements: bytes, timetag: bytes = b"\0" * 7 + b"\1") -> bytes:
    return b"#bundle\0" + timetag + b"".join(struct.pack(">i", len(e)) + e for e in elements)


def wrong_value(rng: random.Random, address: str) -> list[tuple[str, object]]:
    """Arguments that are wrong for `address` (type, value, or count)."""
    junk = [("s", "x" * rng.randint(0, 40)), ("b", rng.randbytes(rng.randint(0, 16))), ("T", None), ("F", None),
            ("N", None), ("c", 65), ("I", None), ("m", 0x90244000), ("r", 0xFF00FF00), ("t", 1),
            ("f", float("nan")), ("f", float("inf")), ("f", 1.5), ("i", -1), ("h", 2**40), ("d", -1e300)]
    if address in NO_ARGS:
        return [rng.choice(junk) for _ in range(rng.randint(1, 3))]
    bad = {
        "/dd/subscribe": [("i", 0), ("i", 70000), ("i", -5), ("f", 80.5), ("s", "9001"), ("h", 2**33), ("N", None),
                          ("f", 1e9), ("T", None), ("b", b"\1\2")],
        "/dd/like": [("i", -1), ("i", 2**31 - 1), ("i", 10**8), ("f", 1.5), ("f", float("nan")), ("s", "1"),
                     ("h", 2**40), ("T", None), ("N", None), ("b", b""), ("d", 0.25), ("f", -3.0)],
        "/dd/mode": [("s", "groovy"), ("s", ""), ("s", "EXPLORE"), ("s", "explore "), ("s", "\u00e9"), ("i", 1),
                     ("f", 0.0), ("T", None), ("N", None), ("b", b"good")],
        "/dd/fotf": [("i", 2), ("i", -1), ("f", 0.5), ("s", "1"), ("T", None), ("N", None), ("h", 2**35),
                     ("f", float("inf"))],
        "/dd/tempo": [("f", 19.99), ("f", 300.01), ("f", -120.0), ("f", float("nan")), ("f", float("inf")),
                      ("i", 0), ("i", 10**6), ("s", "120"), ("d", 1e12), ("h", -1), ("T", None), ("N", None)],
        "/dd/save": [("s", ""), ("s", "x" * 65), ("s", "../escape"), ("s", "a/b"), ("s", "/abs"), ("s", "a\\b"),
                     ("s", ".."), ("s", "a.b"), ("s", "tab\there"), ("s", "caf\u00e9"), ("s", "~"),
                     ("s", "nul\x01"), ("i", 3), ("f", 1.0), ("b", b"name"), ("T", None), ("N", None)],
    }
    bad["/dd/unsubscribe"] = bad["/dd/subscribe"]
    bad["/dd/dislike"] = bad["/dd/like"]
    options = bad[address]
    k = rng.random()
    if k < 0.7:
        return [rng.choice(options)]
    if k < 0.8 and address in ("/dd/mode", "/dd/fotf", "/dd/tempo"):
        return []  # missing argument
    return [rng.choice(options + junk) for _ in range(rng.randint(2, 4))]  # too many


def bad_message(rng: random.Random) -> tuple[bytes, str]:
    """A well-formed OSC message that must be answered with one /dd/error; (datagram, address)."""
    if rng.random() < 0.08:
        address = "/dd/" + "".join(rng.choice("abcdefghijklmnopqrstuvwxyz_/0123456789") for _ in
                                   range(rng.randint(0, 20)))
        if address in osc.addresses() or address == "/dd/error":
            address += "_x"
        return raw_message(address, [rng.choice([("i", 1), ("s", "x"), ("f", 2.0)])] * rng.randint(0, 2)), address
    address = rng.choice(INBOUND)
    return raw_message(address, wrong_value(rng, address)), address


def garbage(rng: random.Random) -> bytes:
    """Not OSC, or broken OSC: must never change anything (replies, if any, are /dd/error)."""
    k = rng.random()
    if k < 0.3:
        return rng.randbytes(rng.randint(0, 300))
    if k < 0.45:
        return rng.choice([b"/dd/", b"#bundle\0", b"/", b","]) + rng.randbytes(rng.randint(0, 60))
    if k < 0.7:  # truncated or corrupted messages whose no-argument form is harmless or also an error
        # (python-osc zero-pads a float cut short, for Reaktor: so no fotf/like with a float here)
        msg = raw_message(*rng.choice([("/dd/tempo", [("f", 999.0)]), ("/dd/mode", [("s", "nope")]),
                                       ("/dd/fotf", [("i", 7)]), ("/dd/tempo", [("s", "fast")])]))
        if rng.random() < 0.5:
            return msg[:rng.randint(0, len(msg) - 1)]
        tag_at = msg.index(b",") + 1
        return msg[:tag_at] + bytes([rng.randrange(256)]) + msg[tag_at + 1:]
    if k < 0.85:  # bundles with broken element sizes: the whole datagram is dropped
        ok = raw_message("/dd/tempo", [("f", 500.0)])
        size = rng.choice([-4, -1, 0, 3, len(ok) + 4, 2**31 - 1, -(2**31)])
        return b"#bundle\0" + bytes(8) + struct.pack(">i", size) + ok
    # a bundle header with a truncated element or timetag
    b = bundle(raw_message("/dd/mode", [("s", "x")]))
    return b[:rng.randint(0, len(b) - 1)]


# --- the real daemon over UDP ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def target(tmp_path_factory):
    client = OscClient(0)
    client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    d = Daemon(tmp_path_factory.mktemp("fuzz") / "state", "--notify", f"127.0.0.1:{client.port}")
    client.target = ("127.0.0.1", d.port)
    d.start()
    client.drain(0.2)
    yield d, client
    client.close()
    assert d.stop() == 0, d.output()


def status(c: OscClient) -> list:
    c.send("/dd/status")
    return c.expect("/dd/status")


def sync(c: OscClient) -> list[tuple[str, list]]:
    """Ping and collect everything that came back before the pong (UDP on loopback keeps order)."""
    c.send("/dd/ping")
    c.expect("/dd/pong", timeout=10)
    got = list(c.backlog)
    c.backlog.clear()
    return got


def assert_errors(got, expected: list[str]) -> None:
    assert not [m for m in got if m[0] in FORBIDDEN], got
    errors = [args[1] for addr, args in got if addr == "/dd/error"]
    assert sorted(errors) == sorted(expected), (len(errors), len(expected))


def test_thousands_of_bad_messages_each_get_one_error(target):
    d, c = target
    rng = random.Random(SEED)
    before = status(c)
    sync(c)
    total = 0
    for _ in range(60):  # 60 x 40 = 2400 messages, one /dd/error each
        expected = []
        for _ in range(40):
            dgram, address = bad_message(rng)
            c.send_raw(dgram)
            expected.append(address)
        assert_errors(sync(c), expected)
        total += len(expected)
    assert total == 2400
    assert status(c) == before and d.proc.poll() is None


def test_garbage_changes_nothing_and_is_never_fatal(target):
    d, c = target
    rng = random.Random(SEED + 1)
    before = status(c)
    sync(c)
    for _ in range(40):  # 40 x 50 = 2000 datagrams
        for _ in range(50):
            c.send_raw(garbage(rng))
        got = sync(c)
        assert all(addr in ("/dd/error", "/dd/status") for addr, _ in got), got
        assert d.proc.poll() is None
    assert status(c) == before


def test_bundles_nested_and_bad(target):
    d, c = target
    rng = random.Random(SEED + 2)
    before = status(c)
    sync(c)
    for _ in range(100):
        msgs = [bad_message(rng) for _ in range(rng.randint(1, 6))]
        depth = rng.randint(1, 7)
        packet = bundle(*[m for m, _ in msgs])
        for _ in range(depth - 1):
            packet = bundle(packet, timetag=rng.randbytes(8))  # any timetag: handled now, in order
        c.send_raw(packet)
        assert_errors(sync(c), [a for _, a in msgs])
    # deeper than 8, or one broken element: the whole datagram is dropped, nothing answered
    deep = raw_message("/dd/tempo", [("f", 1.0)])
    for _ in range(3000):
        deep = bundle(deep)
    for packet in (deep[:60000], bundle(bundle(raw_message("/dd/mode", [("s", "x")])), b"\0\0\0"),
                   bundle(raw_message("/dd/fotf", [("i", 5)]), b"#bundle\0")):
        c.send_raw(packet)
        assert_errors(sync(c), [])
    assert status(c) == before


def test_huge_datagrams(target):
    d, c = target
    before = status(c)
    sync(c)
    cases = [
        (raw_message("/dd/save", [("s", "a" * 65000)]), ["/dd/save"]),
        (raw_message("/dd/mode", [("s", "m" * 65000)]), ["/dd/mode"]),  # the error must not echo 65 KB
        (raw_message("/dd/" + "z" * 60000, []), ["/dd/" + "z" * 196]),
        (raw_message("/dd/like", [("b", b"\xff" * 64000)]), ["/dd/like"]),
        (bundle(*[raw_message("/dd/tempo", [("f", 1000.0)])] * 2000), ["/dd/tempo"] * 2000),
        (raw_message("/dd/next", [("i", 1)] * 12000), ["/dd/next"]),
        (b"\x00" * 65000, []),
        (b"#bundle\x00" + b"\xff" * 64000, []),
    ]
    for packet, expected in cases:
        assert len(packet) <= 65507
        c.send_raw(packet)
        got = sync(c)
        assert_errors(got, expected)
    assert status(c) == before
    t0 = time.monotonic()
    c.send("/dd/ping")
    c.expect("/dd/pong", timeout=1)
    assert time.monotonic() - t0 < 0.5


def test_no_echo_loop_through_own_port(target):
    """Subscribing the daemon to itself is refused; its own datagrams and /dd/error are never answered."""
    d, c = target
    c.send("/dd/subscribe", d.port)
    assert c.expect("/dd/error")[1] == "/dd/subscribe"
    c.send("/dd/error", "hello", "/dd/x")  # another daemon's error: no answer, or two would ping-pong
    assert_errors(sync(c), [])


# --- in process: osc.OscServer with a fake session --------------------------------------------------

class FakeSession:
    """Validates like the real session (mode names, loop ids, save names) and records what got through."""

    def __init__(self, server):
        self.calls = []
        self.server = server
        self._origin = None
        self.mode, self.fotf, self.tempo, self.playing = "explore", False, 120.0, False

    def __getattr__(self, name):
        return lambda *a, **k: self.calls.append((name, a))

    @contextlib.contextmanager
    def origin(self, origin):
        self._origin = origin
        yield
        self._origin = None

    def emit(self, address, *args, origin=None):
        self.server.on_message(address, args, origin or self._origin)

    def rate(self, loop_id, liked):
        if loop_id is not None and loop_id > 1000:
            raise CommandError(f"loop id {loop_id} was never proposed")
        self.calls.append(("rate", (loop_id, liked)))

    def set_mode(self, mode):
        if mode not in MODES:
            raise CommandError(f"mode {mode!r} unknown")
        self.calls.append(("set_mode", (mode,)))

    def save(self, name):
        if name is not None:
            check_name(name)
        self.calls.append(("save", (name,)))

    def status_args(self):
        return [0, 0, 1, "explore", "cpu", 0]


@pytest.fixture
def server():
    srv = osc.OscServer("127.0.0.1", 0)
    srv.session = FakeSession(srv)
    srv.sent = []
    srv._send = lambda data, targets: srv.sent.append(osc_decode(data))
    yield srv
    srv.sock.close()


def osc_decode(data: bytes):
    from deepdrummer_live.client import decode

    (m,) = decode(data)
    return m.address, list(m.args)


def test_in_process_fuzz_never_raises_and_never_calls_the_session_on_bad_input(server):
    rng = random.Random(SEED + 3)
    sender = ("127.0.0.1", 5555)
    for _ in range(20000):
        if rng.random() < 0.5:
            dgram, address = bad_message(rng)
            n = len(server.sent)
            server.handle_datagram(dgram, sender)
            assert server.sent[n:] == [server.sent[-1]] and server.sent[-1][0] == "/dd/error"
            assert server.sent[-1][1][1] == address[:200]
        else:
            server.handle_datagram(garbage(rng), sender)
    assert server.session.calls == []  # nothing bad ever reached the session
    assert server.counts["dropped_not_osc"] > 5000


def test_in_process_edge_cases(server):
    s = ("127.0.0.1", 5555)
    hang = b"#bundle\0" + bytes(8) + struct.pack(">i", -4)  # python-osc's parser loops forever on this
    t0 = time.monotonic()
    server.handle_datagram(hang, s)
    assert time.monotonic() - t0 < 0.1 and server.counts["dropped_not_osc"] == 1
    server.handle_datagram(raw_message("/dd/like", [("c", 65)]), s)  # python-osc drops 'c' silently
    server.handle_datagram(raw_message("/dd/save", [("I", None)]), s)
    assert server.session.calls == [] and [m[0] for m in server.sent] == ["/dd/error", "/dd/error"]
    server.handle_datagram(raw_message("/dd/ping", []), ("10.1.2.3", 5555))  # not allowed: dropped, counted
    assert server.counts["dropped_not_allowed"] == 1
    server.handle_datagram(raw_message("/dd/pong", []), server.address)  # our own echo: dropped
    assert server.counts["dropped_own"] == 1 and len(server.sent) == 2
    server.handle_datagram(raw_message("/dd/like", [("f", 3.0)]), s)  # Pd's integral float is fine
    assert server.session.calls == [("rate", (3, True))]
