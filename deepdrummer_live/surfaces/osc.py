"""OSC over UDP: the server (socket, parsing, subscribers) apart from routing (plain handler functions).

Every datagram is parsed with python-osc, then each message is validated against its route's
argument spec *before* its handler runs, so a bad message changes nothing and is answered with
/dd/error. Datagrams that are not OSC are dropped and counted, never fatal.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import struct
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from pythonosc import osc_message
from pythonosc.parsing import osc_types

from deepdrummer_live import commands
from deepdrummer_live.client import encode  # one encoder for both ends: the daemon builds as its clients do
from deepdrummer_live.errors import CommandError, DeepDrummerError, UsageError

log = logging.getLogger(__name__)

MAX_SUBSCRIBERS = 64
MAX_REFUSED_LOGGED = 64  # distinct refused senders named in the log; the rest are only counted
LOOPBACK = [ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128")]
MAX_BUNDLE_DEPTH = 8
# Type tags python-osc parses into a value; it silently skips others ('c', 'I', ...), which would
# turn `/dd/like ,c` into `/dd/like` (rate the current loop), so messages with others are refused.
PARSED_TAGS = frozenset("ihfdsbrmtTFN[]")


class NotOsc(Exception):
    """A datagram that is not an OSC message or bundle (dropped and counted)."""


def unpack(data: bytes, depth: int = 0) -> list[bytes]:
    """The message datagrams of an OSC packet, in order; bundles (nested too) are walked here.

    python-osc's own bundle parser loops forever on a negative element size and recurses without
    limit, so bundles never reach it: every element must be a positive size that fits.
    """
    if data.startswith(b"#bundle\x00"):
        if depth >= MAX_BUNDLE_DEPTH:
            raise NotOsc(f"bundles nested deeper than {MAX_BUNDLE_DEPTH}")
        if len(data) < 16:
            raise NotOsc("bundle shorter than its header")
        out, i = [], 16
        while i < len(data):
            if i + 4 > len(data):
                raise NotOsc("truncated bundle element size")
            (size,) = struct.unpack(">i", data[i:i + 4])
            i += 4
            if size <= 0 or i + size > len(data):
                raise NotOsc(f"bundle element size {size} does not fit")
            out += unpack(data[i:i + size], depth + 1)
            i += size
        return out
    if data.startswith(b"/"):
        return [data]
    raise NotOsc("neither an OSC message nor a bundle")


def type_tags(dgram: bytes) -> str:
    _, index = osc_types.get_string(dgram, 0)
    if not dgram[index:]:
        return ""
    tags = osc_types.get_string(dgram, index)[0]
    return tags[1:] if tags.startswith(",") else ""  # no leading ",": OscMessage refuses the message


@dataclass
class Request:
    address: str
    args: tuple
    sender: tuple  # (ip, port)
    bad: str | None = None  # why the message cannot be used although it parsed (unsupported type tags)


# --- routing -------------------------------------------------------------------------------------
# Every /dd/ command comes from the one command table (commands.py). Only what is about this
# server itself lives here: who receives outbound messages.

@dataclass(frozen=True)
class OscSender:
    """The origin of a command that came over OSC: replies to it reach this address too."""
    addr: tuple  # (ip, port)


def h_subscribe(srv: OscServer, req: Request) -> None:
    port = _port(req.args[0]) if req.args else req.sender[1]
    srv.subscribe((req.sender[0], port))


def h_unsubscribe(srv: OscServer, req: Request) -> None:
    port = _port(req.args[0]) if req.args else req.sender[1]
    srv.subscribers.discard((req.sender[0], port))


def _port(value) -> int:
    return commands.Param("port", "int", 1, 65535).check(value, "/dd/subscribe")


# A route of the server itself: (min args, max args, handler(server, request)).
SERVER_ROUTES: dict[str, tuple[int, int, Callable[[OscServer, Request], None]]] = {
    "/dd/subscribe": (0, 1, h_subscribe),
    "/dd/unsubscribe": (0, 1, h_unsubscribe),
}


def addresses() -> set[str]:
    """Every inbound /dd/ address: the command table's and this server's own."""
    return set(SERVER_ROUTES) | {c.address for c in commands.COMMANDS.values()}


class OscServer:
    """UDP OSC server in its own thread; `out()` sends to every subscriber."""

    def __init__(self, host: str, port: int, notify: list[tuple[str, int]] = (),
                 allow: list[str] = ()):
        self.session = None
        self.subscribers: set[tuple[str, int]] = set(notify)
        self.counts: Counter = Counter()
        self.allow = self._allow_list(host, allow)
        self._refused: set[str] = set()  # senders already named in the log as not allowed
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            self.sock.bind((host, port))
        except OSError as exc:
            self.sock.close()
            raise UsageError(f"--osc-host {host} --osc-port {port}: cannot listen ({exc.strerror}); "
                             f"pick a free port with --osc-port or stop the program using it") from exc
        self.sock.settimeout(0.2)
        self.address = self.sock.getsockname()[:2]
        self.send_lock = threading.Lock()
        self._running = False
        self._thread = threading.Thread(target=self._serve, name="osc-server", daemon=True)

    @staticmethod
    def _allow_list(host: str, allow) -> list:
        try:
            nets = [ipaddress.ip_network(c, strict=False) for c in allow]
        except ValueError as exc:
            raise UsageError(f"--osc-allow: {exc}; give a CIDR such as 192.168.1.0/24") from exc
        try:
            loopback_host = host == "localhost" or ipaddress.ip_address(host).is_loopback
        except ValueError:
            raise UsageError(f"--osc-host {host!r} is not an IP address; use e.g. 127.0.0.1 or 0.0.0.0") from None
        if not loopback_host and not nets:
            # It listens where it is told (the contract), but only this machine may control it until
            # the performer names who else may: a stranger on the network cannot rate or stop it.
            log.warning("OSC listens on %s, but only loopback senders are served; add --osc-allow CIDR "
                        "(e.g. --osc-allow 192.168.1.0/24) for controllers on other machines", host)
        return LOOPBACK + nets

    def start(self, session) -> None:
        self.session = session
        session.add_listener(self.on_message)
        self._running = True
        self._thread.start()

    def stop(self) -> None:
        self._running = False
        if self._thread.is_alive():
            self._thread.join(timeout=2)
        self.sock.close()

    # --- outbound ---------------------------------------------------------------------------------

    def subscribe(self, target: tuple[str, int]) -> None:
        if self._is_self(target):
            raise CommandError(f"cannot subscribe the daemon's own port {target[1]}; give your receiving port")
        if target not in self.subscribers and len(self.subscribers) >= MAX_SUBSCRIBERS:
            raise CommandError(f"too many subscribers ({MAX_SUBSCRIBERS}); send /dd/unsubscribe from unused ones")
        self.subscribers.add(target)

    def _send(self, data: bytes, targets) -> None:
        for target in targets:
            try:
                with self.send_lock:
                    self.sock.sendto(data, target)
            except OSError as exc:  # a receiver that went away must not stop the others
                self.counts["send_failed"] += 1
                log.debug("OSC send to %s failed: %s", target, exc)

    def out(self, address: str, *args) -> None:
        """To every subscriber."""
        self._send(encode(address, *args), list(self.subscribers))

    def on_message(self, address: str, args: tuple, origin) -> None:
        """A session listener: to every subscriber, and to the OSC client that caused it (once)."""
        targets = set(self.subscribers)
        if isinstance(origin, OscSender):
            targets.add(origin.addr)
        self._send(encode(address, *args), targets)

    def reply(self, sender: tuple, address: str, *args) -> None:
        """To the sender and every subscriber, once each."""
        self._send(encode(address, *args), {tuple(sender)} | set(self.subscribers))

    # --- inbound ----------------------------------------------------------------------------------

    def _serve(self) -> None:
        while self._running:
            try:
                data, sender = self.sock.recvfrom(65536)
            except TimeoutError:
                continue
            except OSError as exc:
                if self._running:
                    log.warning("OSC socket error: %s", exc)
                continue
            try:
                self.handle_datagram(data, sender[:2])
            except Exception:  # nothing a client sends may stop the server; keep the traceback
                self.counts["internal_errors"] += 1
                log.exception("unexpected error handling an OSC datagram from %s", sender)

    def allowed(self, ip: str) -> bool:
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(addr in net for net in self.allow if addr.version == net.version)

    def _is_self(self, addr: tuple) -> bool:
        """Our own socket (a --notify or /dd/subscribe pointing back at the server would echo forever)."""
        if addr[1] != self.address[1]:
            return False
        try:
            return addr[0] == self.address[0] or ipaddress.ip_address(addr[0]).is_loopback
        except ValueError:
            return False

    def _parse(self, dgram: bytes, sender: tuple) -> Request:
        tags = type_tags(dgram)
        unsupported = sorted(set(tags) - PARSED_TAGS)
        if unsupported:  # parse the address only: python-osc would drop these arguments silently
            address = osc_types.get_string(dgram, 0)[0]
            return Request(address, (), sender, f"unsupported OSC type tag(s) {''.join(unsupported)!r} "
                                                f"in ,{tags}; send i, f or s")
        msg = osc_message.OscMessage(dgram)
        return Request(msg.address, tuple(msg.params), sender)

    def handle_datagram(self, data: bytes, sender: tuple) -> None:
        self.counts["datagrams"] += 1
        if not self.allowed(sender[0]):
            self.counts["dropped_not_allowed"] += 1
            if len(self._refused) < MAX_REFUSED_LOGGED and sender[0] not in self._refused:
                self._refused.add(sender[0])  # said once per sender: a flood must not flood the log
                host_bits = 128 if ":" in sender[0] else 32  # one host: /32 for IPv4, /128 for IPv6
                log.warning("OSC from %s dropped: not an allowed sender; add --osc-allow %s/%d (or its "
                            "network) to let it control the daemon", sender[0], sender[0], host_bits)
            return
        if self._is_self(sender):
            self.counts["dropped_own"] += 1
            return
        try:
            requests = [self._parse(d, sender) for d in unpack(data)]
        except (NotOsc, osc_types.ParseError, osc_message.ParseError, ValueError, IndexError, TypeError,
                OverflowError, UnicodeDecodeError, struct.error) as exc:
            self.counts["dropped_not_osc"] += 1
            log.debug("dropped a non-OSC datagram from %s: %s", sender, exc)
            return
        for req in requests:
            self.dispatch(req)

    def dispatch(self, req: Request) -> None:
        if not req.address.startswith("/dd/"):
            self.counts["ignored_foreign"] += 1
            return
        if req.address == "/dd/error":  # never answer an error with an error (two daemons would ping-pong)
            self.counts["ignored_error"] += 1
            return
        try:
            if req.bad:
                raise CommandError(f"{req.address}: {req.bad}")
            route = SERVER_ROUTES.get(req.address)
            if route is not None:
                lo, hi, handler = route
                if not lo <= len(req.args) <= hi:
                    want = f"{lo}" if lo == hi else f"{lo}-{hi}"
                    raise CommandError(f"{req.address} takes {want} argument(s), got {len(req.args)}: "
                                       f"{list(req.args)!r}")
                handler(self, req)
            else:
                name = req.address[len("/dd/"):]
                if name not in commands.COMMANDS:
                    raise CommandError(f"unknown address {req.address}; see docs/protocol.md for the /dd/ "
                                       f"addresses")
                commands.execute(self.session, name, req.args, origin=OscSender(tuple(req.sender)))
            self.counts["handled"] += 1
        except DeepDrummerError as exc:
            self.counts["errors"] += 1
            message = str(exc)  # it may echo a huge argument: keep the reply well inside one datagram
            if len(message) > 500:
                message = message[:497] + "..."
            self.reply(req.sender, "/dd/error", message, req.address[:200])
