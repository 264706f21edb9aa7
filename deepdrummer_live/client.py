"""A client of the daemon's OSC contract (docs/protocol.md), for scripts, benchmarks and tests.

Importable without torch or numpy (only the standard library and python-osc): a DAW macro, a stage
show's automation or an outside test suite starts it in milliseconds.

    from deepdrummer_live.client import OscClient, Rated

    with OscClient(9000) as dd:                  # the daemon at 127.0.0.1:9000
        dd.subscribe()                           # from now on every outbound message reaches us
        loop = dd.next_loop()                    # the next /dd/loop (+ /dd/levels, /dd/shape), as a Loop
        dd.send("/dd/like", loop.loop_id)
        rated = dd.expect(Rated, where=lambda r: r.loop_id == loop.loop_id)
        print(rated.total_likes)

How messages are kept: UDP is read only while the client waits (no thread). Every message that
arrives while waiting for another address goes to `backlog` in arrival order, and the next `wait`
or `expect` looks there first, so nothing is lost by waiting for something else (up to `max_backlog`
messages; the oldest go first beyond that, counted in `dropped`). Every `/dd/error` seen is also
kept in `errors` (the newest 100), whoever takes the message.

Sending: Python int -> OSC `i`, float -> `f`, str -> `s` (bool is refused: send 0 or 1), or give
the type tags yourself with `types="if..."`.
"""

from __future__ import annotations

import socket
import struct
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any, NamedTuple, TypeVar

from pythonosc.osc_message_builder import OscMessageBuilder
from pythonosc.osc_packet import OscPacket

from deepdrummer_live.commands import COMMANDS
from deepdrummer_live.errors import DeepDrummerError
from deepdrummer_live.loop import LoopRecord, decode_levels_args, decode_loop_args, decode_shape_args
from deepdrummer_live.vocab import DEFAULT_METER, OSC_HOST, OSC_PORT

DEFAULT_HOST = OSC_HOST
DEFAULT_PORT = OSC_PORT
DATAGRAM_MAX = 65536
MAX_BACKLOG = 10_000
MAX_ERRORS_KEPT = 100
# A wait reads the socket in slices no longer than this, so a `stop` callback (e.g. "the daemon
# process exited") is looked at a few times a second even when nothing arrives.
READ_SLICE_S = 0.25


class ClientError(DeepDrummerError):
    """Something the client cannot do: an unresolvable host, a message that does not fit the contract."""


class ProtocolError(ClientError):
    """A message whose arguments do not fit the contract's view of its address (or a datagram that is not OSC)."""


class NoReply(ClientError, TimeoutError):
    """An expected message did not come in time (a TimeoutError too, so `except TimeoutError` catches it)."""


class DaemonError(ClientError):
    """The daemon answered a request with /dd/error; `error` is the Error view (message, offending address)."""

    def __init__(self, error: Error):
        super().__init__(f"{error.address}: {error.message}")
        self.error = error


class Unreachable(ClientError, ConnectionRefusedError):
    """Nothing listens at the daemon's address (seen only by a connected client: `OscClient(connect=True)`)."""


# --- encoding and decoding -----------------------------------------------------------------------


def encode(address: str, *args, types: str | None = None) -> bytes:
    """One OSC message. Without `types`: int -> i, float -> f, anything else -> s (its str); bool is
    refused because OSC 1.0 has no type for it and 1/0 says what is meant. With `types`, one type tag
    per argument (any tag python-osc can build: i f s d T F N b ...)."""
    builder = OscMessageBuilder(address=address)
    if types is not None:
        if len(types) != len(args):
            raise ClientError(f"{address}: types={types!r} has {len(types)} tag(s) for {len(args)} "
                              f"argument(s); give one tag per argument")
        for a, t in zip(args, types):
            builder.add_arg(a, t)
        return builder.build().dgram
    for a in args:
        if isinstance(a, bool):
            raise ClientError(f"{address}: bool argument {a!r}; send 0 or 1")
        if isinstance(a, int):
            builder.add_arg(a, "i")
        elif isinstance(a, float):
            builder.add_arg(a, "f")
        else:
            builder.add_arg(str(a), "s")
    return builder.build().dgram


class Message(NamedTuple):
    """One received OSC message: its address and its arguments (a tuple)."""

    address: str
    args: tuple


def decode(data: bytes) -> list[Message]:
    """The messages of one datagram (a message, or a bundle of them, in order).

    ProtocolError when it is not OSC: python-osc raises a handful of exception types for that."""
    try:
        return [Message(t.message.address, tuple(t.message.params)) for t in OscPacket(data).messages]
    except Exception as exc:  # ParseError, ValueError, IndexError, struct.error, UnicodeDecodeError...
        raise ProtocolError(f"a datagram of {len(data)} bytes that is not OSC ({exc})") from exc


def resolve(host: str, port: int) -> tuple[int, tuple]:
    """(address family, socket address) of host:port for UDP, IPv4 first: "localhost" may list ::1
    first while the daemon listens on 127.0.0.1, its default."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except socket.gaierror as exc:
        raise ClientError(f"host {host}: cannot resolve it ({exc.strerror}); give an IP address or a host "
                          f"name of the daemon's machine") from exc
    family, _, _, _, sockaddr = min(infos, key=lambda info: info[0] != socket.AF_INET)
    return family, sockaddr


# --- typed views of outbound messages ------------------------------------------------------------

V = TypeVar("V")


def _need(address: str, args: tuple, n: int, what: str) -> None:
    if len(args) < n:
        raise ProtocolError(f"{address} with {len(args)} argument(s) {list(args)!r}; the contract gives "
                            f"at least {n}: {what}")


@dataclass(frozen=True)
class Row:
    """One row of a loop: its sample, the GM note it plays on, its steps (`x` hit, `.` rest) and,
    once /dd/levels came, its levels (`.` rest, `1`-`9` a hit's level)."""

    sample: str
    note: int
    steps: str
    levels: str | None = None

    @property
    def hits(self) -> list[int]:
        """The 0-based steps that have a hit."""
        return [i for i, c in enumerate(self.steps) if c == "x"]


@dataclass(frozen=True)
class Loop:
    """`/dd/loop`: i loop_id, f p_like, f bpm, i n_steps, then (s sample, i note, s steps) per row.

    `OscClient.next_loop` also fills in the levels of each row (from /dd/levels) and the shape
    (steps_per_bar, bars, meter: from /dd/shape, contract v1.2)."""

    ADDRESS = "/dd/loop"
    loop_id: int
    p_like: float
    bpm: float
    n_steps: int
    rows: tuple[Row, ...]
    steps_per_bar: int | None = None
    bars: int | None = None
    meter: str | None = None

    @classmethod
    def from_args(cls, args: Iterable) -> Loop:
        try:
            loop_id, p_like, bpm, n_steps, rows = decode_loop_args(tuple(args))
        except (ValueError, TypeError) as exc:
            raise ProtocolError(str(exc)) from exc
        return cls(loop_id, p_like, bpm, n_steps, tuple(Row(*row) for row in rows))

    def record(self) -> LoopRecord:
        """The loop as the daemon's own record (deepdrummer_live.loop): rows without roles, every hit at
        the default level until /dd/levels came, 4/4 until /dd/shape came."""
        levels = self.levels if all(lv is not None for lv in self.levels) else None
        return LoopRecord.of(id=self.loop_id, samples=self.samples, notes=self.notes, steps=self.steps,
                             levels=levels, tempo=self.bpm, p_like=self.p_like, meter=self.meter or DEFAULT_METER)

    @property
    def samples(self) -> list[str]:
        return [r.sample for r in self.rows]

    @property
    def notes(self) -> list[int]:
        return [r.note for r in self.rows]

    @property
    def steps(self) -> list[str]:
        return [r.steps for r in self.rows]

    @property
    def levels(self) -> list[str | None]:
        return [r.levels for r in self.rows]

    def with_levels(self, levels: Levels) -> Loop:
        if levels.loop_id != self.loop_id or len(levels.levels) != len(self.rows):
            raise ProtocolError(f"/dd/levels of loop {levels.loop_id} with {len(levels.levels)} row(s) does not "
                                f"fit /dd/loop {self.loop_id} with {len(self.rows)} row(s)")
        return replace(self, rows=tuple(replace(r, levels=lv) for r, lv in zip(self.rows, levels.levels)))

    def with_shape(self, shape: Shape) -> Loop:
        if shape.loop_id != self.loop_id:
            raise ProtocolError(f"/dd/shape of loop {shape.loop_id} does not fit /dd/loop {self.loop_id}")
        return replace(self, steps_per_bar=shape.steps_per_bar, bars=shape.bars, meter=shape.meter)


@dataclass(frozen=True)
class Levels:
    """`/dd/levels`: i loop_id, then s levels per row (in /dd/loop order)."""

    ADDRESS = "/dd/levels"
    loop_id: int
    levels: tuple[str, ...]

    @classmethod
    def from_args(cls, args: Iterable) -> Levels:
        args = tuple(args)
        _need(cls.ADDRESS, args, 1, "loop_id, then levels per row")
        return cls(int(args[0]), tuple(decode_levels_args(args)))


@dataclass(frozen=True)
class Shape:
    """`/dd/shape` (contract v1.2): i loop_id, i steps_per_bar, i bars, s meter."""

    ADDRESS = "/dd/shape"
    loop_id: int
    steps_per_bar: int
    bars: int
    meter: str

    @classmethod
    def from_args(cls, args: Iterable) -> Shape:
        args = tuple(args)
        _need(cls.ADDRESS, args, 4, "loop_id, steps_per_bar, bars, meter")
        return cls(*decode_shape_args(args))


@dataclass(frozen=True)
class Rated:
    """`/dd/rated`: i loop_id, s like|dislike, i total_likes, i total_dislikes (sent once the rating is durable)."""

    ADDRESS = "/dd/rated"
    loop_id: int
    label: str
    total_likes: int
    total_dislikes: int

    @classmethod
    def from_args(cls, args: Iterable) -> Rated:
        args = tuple(args)
        _need(cls.ADDRESS, args, 4, "loop_id, like|dislike, total_likes, total_dislikes")
        return cls(int(args[0]), str(args[1]), int(args[2]), int(args[3]))

    @property
    def liked(self) -> bool:
        return self.label == "like"


@dataclass(frozen=True)
class Saved:
    """`/dd/saved`: i loop_id, s mid_path, s wav_path."""

    ADDRESS = "/dd/saved"
    loop_id: int
    mid_path: str
    wav_path: str

    @classmethod
    def from_args(cls, args: Iterable) -> Saved:
        args = tuple(args)
        _need(cls.ADDRESS, args, 3, "loop_id, mid_path, wav_path")
        return cls(int(args[0]), str(args[1]), str(args[2]))


@dataclass(frozen=True)
class Error:
    """`/dd/error`: s message, s offending_address."""

    ADDRESS = "/dd/error"
    message: str
    address: str

    @classmethod
    def from_args(cls, args: Iterable) -> Error:
        args = tuple(args)
        # Tolerant on purpose: an error is worth reading even if it came malformed.
        return cls(str(args[0]) if args else "", str(args[1]) if len(args) > 1 else "")


@dataclass(frozen=True)
class Status:
    """`/dd/status`: i total_likes, i total_dislikes, i current_loop_id (-1 before the first loop), s mode,
    s device, i train_steps."""

    ADDRESS = "/dd/status"
    total_likes: int
    total_dislikes: int
    current_loop_id: int
    mode: str
    device: str
    train_steps: int

    @classmethod
    def from_args(cls, args: Iterable) -> Status:
        args = tuple(args)
        _need(cls.ADDRESS, args, 6, "total_likes, total_dislikes, current_loop_id, mode, device, train_steps")
        return cls(int(args[0]), int(args[1]), int(args[2]), str(args[3]), str(args[4]), int(args[5]))


@dataclass(frozen=True)
class Profile:
    """`/dd/profile` (contract v1.2): s name, i ratings_in_profile."""

    ADDRESS = "/dd/profile"
    name: str
    ratings: int

    @classmethod
    def from_args(cls, args: Iterable) -> Profile:
        args = tuple(args)
        _need(cls.ADDRESS, args, 2, "name, ratings_in_profile")
        return cls(str(args[0]), int(args[1]))


VIEWS: dict[str, type] = {v.ADDRESS: v for v in (Loop, Levels, Shape, Rated, Saved, Error, Status, Profile)}


def view(message: Message) -> Any:
    """The typed view of a message (Loop, Levels, Shape, Rated, Saved, Error, Status, Profile), or the
    Message itself for an address without one (e.g. /dd/pong)."""
    cls = VIEWS.get(message.address)
    return message if cls is None else cls.from_args(message.args)


# The answer each inbound address implies (contract v1.1, `send`); any other address has none.
# The answer each address implies: the command table's `reply=` (commands.py), never typed again here.
EXPECTED_REPLY = {c.address: c.reply for c in COMMANDS.values() if c.reply is not None}


def _listen_host(family: int, target_ip: str) -> str:
    """Loopback when the daemon is on this machine (nothing else can reach the client), else every interface
    (a socket bound to loopback cannot send to another machine)."""
    loopback = target_ip.startswith("127.") or target_ip == "::1"
    if family == socket.AF_INET6:
        return "::1" if loopback else "::"
    return "127.0.0.1" if loopback else "0.0.0.0"


# --- the client ----------------------------------------------------------------------------------


class OscClient:
    """A UDP socket that talks to one daemon and keeps what it receives.

    port, host: the daemon's OSC address [127.0.0.1:9000]. listen_host, listen_port: where this
    client receives [loopback for a daemon on this machine, else every interface; a free port, see
    `local_port`]. connect=True connects the socket: only the daemon's datagrams arrive, and a
    closed daemon port raises Unreachable instead of a silent timeout (what `deepdrummer-live send`
    uses); the target cannot change after that.

    Not thread-safe: use one client per thread.
    """

    def __init__(self, port: int = DEFAULT_PORT, host: str = DEFAULT_HOST, *, listen_host: str | None = None,
                 listen_port: int = 0, connect: bool = False, max_backlog: int = MAX_BACKLOG):
        family, self.target = resolve(host, port)
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            if connect:
                self.sock.connect(self.target)
            else:
                self.sock.bind((listen_host or _listen_host(family, self.target[0]), listen_port))
        except OSError as exc:
            self.sock.close()
            raise ClientError(f"cannot open a UDP socket for {host}:{port} ({exc.strerror}); "
                              f"pick another listen_port or check the address") from exc
        self.connected = connect
        self.local_port: int = self.sock.getsockname()[1]
        self.backlog: deque[Message] = deque()
        self.max_backlog = max_backlog
        self.dropped = 0  # messages pushed out of a full backlog
        self.not_osc = 0  # datagrams that were not OSC (skipped)
        self.errors: deque[Error] = deque(maxlen=MAX_ERRORS_KEPT)

    # --- sending ---------------------------------------------------------------------------------

    def send(self, address: str, *args, types: str | None = None) -> None:
        """Send one message to the daemon (see the module's doc for the argument types)."""
        self.send_raw(encode(address, *args, types=types))

    def send_raw(self, data: bytes) -> None:
        """Send one datagram as it is (e.g. a bundle, or bytes that are not OSC at all)."""
        try:
            if self.connected:
                self.sock.send(data)
            else:
                self.sock.sendto(data, self.target)
        except ConnectionRefusedError as exc:
            raise self._unreachable() from exc

    def subscribe(self, port: int | None = None) -> None:
        """`/dd/subscribe`: every outbound message reaches this client (or `port` on this host) from now on."""
        self.send("/dd/subscribe", *(() if port is None else (port,)))

    def unsubscribe(self, port: int | None = None) -> None:
        self.send("/dd/unsubscribe", *(() if port is None else (port,)))

    # --- receiving -------------------------------------------------------------------------------

    def _read(self, timeout: float) -> list[Message]:
        """The messages of the next datagram, or [] when none came within `timeout` (0: no waiting)."""
        self.sock.settimeout(max(timeout, 0.0))  # 0.0: non-blocking, an empty socket raises BlockingIOError
        try:
            data = self.sock.recv(DATAGRAM_MAX)
        except (TimeoutError, BlockingIOError):
            return []
        except ConnectionRefusedError as exc:
            raise self._unreachable() from exc
        try:
            messages = decode(data)
        except ProtocolError:
            self.not_osc += 1  # not from a daemon (a stray datagram): nothing to keep
            return []
        for m in messages:
            if m.address == Error.ADDRESS:
                self.errors.append(Error.from_args(m.args))
        return messages

    def _keep(self, message: Message) -> None:
        if len(self.backlog) >= self.max_backlog:
            self.backlog.popleft()
            self.dropped += 1
        self.backlog.append(message)

    def receive(self, timeout: float = 0.0) -> Message | None:
        """The next message in arrival order (the backlog's oldest first), or None after `timeout` s."""
        if self.backlog:
            return self.backlog.popleft()
        deadline = time.monotonic() + timeout
        while True:
            messages = self._read(deadline - time.monotonic())
            if messages:
                for m in messages[1:]:
                    self._keep(m)
                return messages[0]
            if time.monotonic() >= deadline:
                return None

    def wait(self, address: str, timeout: float = 5.0, where: Callable[[tuple], bool] | None = None, *,
             take: bool = True, stop: Callable[[], bool] | None = None) -> tuple | None:
        """The arguments of the next message to `address` (satisfying `where(args)` if given) that no
        earlier wait took, or None after `timeout` s. Other messages stay in the backlog, in order.

        take=False leaves the message in the backlog (a look, not a take). `stop()`, looked at a few
        times a second, ends the wait early with None (e.g. "the daemon process exited")."""
        for i, m in enumerate(self.backlog):
            if m.address == address and (where is None or where(m.args)):
                if take:
                    del self.backlog[i]
                return m.args
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or (stop is not None and stop()):
                return None
            found = None
            for m in self._read(min(left, READ_SLICE_S)):
                if found is None and m.address == address and (where is None or where(m.args)):
                    found = m
                    if not take:
                        self._keep(m)
                else:
                    self._keep(m)  # the rest of a bundle stays in order behind the one taken
            if found is not None:
                return found.args

    def expect(self, what: str | type[V], timeout: float = 5.0, where: Callable[[Any], bool] | None = None, *,
               stop: Callable[[], bool] | None = None) -> Any:
        """Like `wait`, but NoReply (a TimeoutError naming what came instead) after `timeout`.

        `what` is an address (returns the args tuple; `where` gets the args) or a view class such as
        Rated or Loop (returns the view; `where` gets the view)."""
        if isinstance(what, str):
            address, test = what, where
        else:
            address = what.ADDRESS
            test = None if where is None else (lambda args: where(what.from_args(args)))
        args = self.wait(address, timeout, test, stop=stop)
        if args is None:
            raise NoReply(f"no {address} within {timeout:g} s{self._what_came()}")
        return args if isinstance(what, str) else what.from_args(args)

    def _what_came(self) -> str:
        """What a NoReply message adds: the newest kept messages and /dd/errors, to say what came instead."""
        recent = [tuple(m) for m in list(self.backlog)[-5:]]
        errors = [f"{e.address}: {e.message}" for e in list(self.errors)[-3:]]
        return f" (newest kept: {recent or 'nothing'}; /dd/error seen: {errors or 'none'})"

    def drain(self, wait: float = 0.0) -> list[Message]:
        """Everything kept and arriving until nothing more comes for `wait` s (0: what is there now), taken.

        A negative check ("no /dd/rated came") is only sound after a barrier: a reply that the daemon
        sends after anything the checked message could have caused (e.g. send /dd/ping, expect /dd/pong)."""
        out = list(self.backlog)
        self.backlog.clear()
        while True:
            messages = self._read(wait)
            if not messages:
                return out
            out += messages

    # --- requests ------------------------------------------------------------------------------

    def request(self, address: str, *args, reply: str | None = None, timeout: float = 5.0,
                types: str | None = None) -> tuple | None:
        """Send one message and wait for the answer it implies (`reply`, default from EXPECTED_REPLY).

        Returns the answer's arguments; DaemonError when a /dd/error about `address` comes first;
        NoReply when neither comes in time. For an address with no answer (e.g. /dd/next), a
        /dd/ping barrier follows it: an error it caused comes before the pong; returns None."""
        reply = reply or EXPECTED_REPLY.get(address)
        self.send(address, *args, types=types)
        if reply is None:
            self.send("/dd/ping")
            reply = "/dd/pong"
            barrier = True
        else:
            barrier = False
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            found = None
            for i, m in enumerate(self.backlog):
                if m.address == reply or (m.address == Error.ADDRESS and m.args[1:2] == (address,)):
                    found = m
                    del self.backlog[i]
                    break
            if found is None:
                if left <= 0:
                    raise NoReply(f"no {reply} for {address} within {timeout:g} s{self._what_came()}")
                for m in self._read(min(left, READ_SLICE_S)):
                    self._keep(m)
                continue
            if found.address == Error.ADDRESS:
                raise DaemonError(Error.from_args(found.args))
            return None if barrier else found.args

    def ping(self, timeout: float = 5.0) -> bool:
        """True when the daemon answers /dd/ping within `timeout` s."""
        self.send("/dd/ping")
        return self.wait("/dd/pong", timeout) is not None

    def status(self, timeout: float = 5.0) -> Status:
        return Status.from_args(self.request("/dd/status", timeout=timeout))

    def next_loop(self, after: int | None = None, timeout: float = 10.0, *, shape: bool = True,
                  stop: Callable[[], bool] | None = None) -> Loop:
        """The next /dd/loop (with an id above `after` if given) with its /dd/levels and its /dd/shape
        (contract v1.2; shape=False for a v1.1 daemon, which sends none) filled in. Needs a subscribed
        client. NoReply when they do not come within `timeout` s (in all)."""
        deadline = time.monotonic() + timeout
        loop = self.expect(Loop, timeout, None if after is None else (lambda lp: lp.loop_id > after), stop=stop)
        levels = self.expect(Levels, max(deadline - time.monotonic(), 0.0), lambda lv: lv.loop_id == loop.loop_id,
                             stop=stop)
        loop = loop.with_levels(levels)
        if shape:
            loop = loop.with_shape(self.expect(Shape, max(deadline - time.monotonic(), 0.0),
                                               lambda s: s.loop_id == loop.loop_id, stop=stop))
        return loop

    # --- life --------------------------------------------------------------------------------------

    def _unreachable(self) -> Unreachable:
        host, port = self.target[:2]
        return Unreachable(f"no daemon at {host}:{port} (connection refused); start it with `deepdrummer-live run` "
                           f"or give its host and port")

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> OscClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def short_float(value: float) -> str:
    """The shortest text that reads back as the same 32-bit float (OSC 'f'): 0.73, not 0.7300000190734863."""
    packed = struct.pack(">f", value)
    for digits in range(1, 10):
        text = f"{value:.{digits}g}"
        if struct.pack(">f", float(text)) == packed:
            return text
    return repr(value)


def format_message(address: str, args: Iterable) -> str:
    """One line `address arg arg...` (floats at 32-bit precision), as `deepdrummer-live send` prints it."""
    return " ".join([address, *(short_float(a) if isinstance(a, float) else str(a) for a in args)])
