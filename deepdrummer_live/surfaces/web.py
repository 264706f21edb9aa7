"""The rating page: HTTP + WebSocket (aiohttp) in its own thread and event loop, inside the daemon process.

Never in the player process: its clock and MIDI out must not share a GIL with a web server.
Every button runs through the command table (`commands.execute`, in a worker thread, since a
rating returns only once it is durable); every outbound message of the session
(`session.add_listener`) is pushed at once to every page as JSON; a page's first message is the
command table and `session.snapshot()`, and a changed snapshot (playhead, mode, locks...) is
pushed as it changes. The page itself is package data (`deepdrummer_live/data/web/`), no CDN.

Wire format (JSON text frames):
  page -> daemon  {"id": n, "command": "like", "args": []}
  daemon -> page  {"type": "hello", "commands": {...}, "snapshot": {...}}
                  {"type": "event", "address": "/dd/loop", "args": [...]}
                  {"type": "snapshot", "snapshot": {...}}
                  {"type": "step", "step": n, "playing": bool}
                  {"type": "result", "id": n, "ok": true} | {..., "ok": false, "error": "message"}

The library (contract v1.2): `GET /library` lists the liked and saved loops newest first (JSON), and
`GET /library/<file>` serves one of their files (.mid, .wav, .sfz and the .sfz's one-shots) as a
download. A file name must be one the library writes (`<6-digit id>-<name>.<ext>`, its
`-samples/r<row>-<name>.wav`) and resolve inside `<state-dir>/library/`; anything else is a 404,
so no path outside the library is ever served. The same access rules as the page hold.

Access: on a loopback --web-host, only requests whose Host is a loopback name (a web site cannot
reach the daemon by DNS rebinding) and WebSockets whose Origin is the page itself (another site's
script cannot drive it). On any other host, every request also needs the token (contract v1.1):
without it, HTTP 403 and nothing changes.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import logging
import math
import os
import re
import secrets
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

from aiohttp import WSMsgType, web

from deepdrummer_live import commands
from deepdrummer_live.errors import DeepDrummerError, UsageError
from deepdrummer_live.paths import data_path

log = logging.getLogger(__name__)

ASSETS = {"/": ("index.html", "text/html"), "/app.js": ("app.js", "text/javascript"),
          "/style.css": ("style.css", "text/css")}
TOKEN_FILE = "web-token"  # in the state dir: a phone's page reconnects after a daemon restart
TOKEN_PLACEHOLDER = "__TOKEN_QUERY__"  # in index.html, where the asset URLs need the token
POLL_HZ = 12  # snapshot polls per second while a page is open: a smooth playhead at 300 BPM is 20 steps/s,
#               the page animates between polls; changes nobody announces (mode, locks) show within 1/12 s
MAX_CLIENTS = 32
MAX_QUEUED = 256  # messages waiting for one page; a page that stops reading is dropped, not buffered forever
MAX_FRAME = 64 * 1024
MAX_ARGS = 16
HEARTBEAT_S = 10.0  # a phone that vanished (Wi-Fi lost) is noticed and dropped
# What the library writes (storage/library.py): a loop's files and its kit's one-shots; nothing else is served
LIBRARY_FILE = re.compile(r"(?P<stem>(?P<id>\d{6})-(?P<name>[A-Za-z0-9 _-]{1,64}))\.(?P<ext>mid|wav|sfz)")
LIBRARY_SAMPLE = re.compile(r"\d{6}-[A-Za-z0-9 _-]{1,64}-samples/r\d{1,2}-[A-Za-z0-9_-]{1,200}\.wav")
LIBRARY_TYPES = {"mid": "audio/midi", "wav": "audio/wav", "sfz": "text/plain"}
LIBRARY_LIMIT = 200  # entries listed: the newest; a long session's library stays a quick page


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        raise UsageError(f"--web-host {host!r} is not an IP address; use e.g. 127.0.0.1 (this machine only) "
                         f"or 0.0.0.0 (every network, with a token)") from None


def load_token(state_dir: Path) -> str:
    """The page's token, kept in the state dir (mode 0600) so a page keeps working across restarts."""
    path = Path(state_dir) / TOKEN_FILE
    try:
        token = path.read_text().strip()
        if len(token) >= 16:
            return token
    except FileNotFoundError:
        pass  # first run on this state dir: make one
    except OSError as exc:
        raise UsageError(f"cannot read the web token {path} ({exc.strerror}); fix its permissions or "
                         f"delete it for a new one") from exc
    token = secrets.token_urlsafe(24)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(token + "\n")
    except OSError as exc:
        raise UsageError(f"cannot write the web token {path} ({exc.strerror}); check --state-dir") from exc
    return token


def reachable_address(host: str) -> str:
    """The address a phone uses for a wildcard host (0.0.0.0: the primary interface's address)."""
    try:
        wildcard = ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return host
    if not wildcard:
        return host
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # TEST-NET-1: connect() on UDP sends nothing, it only picks a route
            return s.getsockname()[0]
        except OSError:
            return socket.gethostname()


def page_url(host: str, port: int, token: str | None) -> str:
    shown = reachable_address(host)
    if ":" in shown:
        shown = f"[{shown}]"
    return f"http://{shown}:{port}/" + (f"?token={token}" if token else "")


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a restart must not wait for TIME_WAIT
        sock.bind((host, port))
        sock.listen(64)
    except OSError as exc:
        sock.close()
        raise UsageError(f"--web-host {host} --web-port {port}: cannot listen ({exc.strerror}); pick a free "
                         f"port with --web-port, or --web-port 0 to turn the page off") from exc
    sock.setblocking(False)
    return sock


def load_assets() -> dict[str, bytes]:
    return {name: data_path("web", name).read_bytes() for name, _ in ASSETS.values()}


def plain(value):
    """`value` as JSON-able data: numpy/torch numbers and arrays as lists, NaN and infinities as null."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [plain(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if hasattr(value, "tolist"):
        return plain(value.tolist())
    if hasattr(value, "__float__"):
        return plain(float(value))
    return str(value)


def describe_commands() -> dict:
    """The command table as the page needs it: which controls to show, with what ranges and choices."""
    return {name: {"params": [{"name": p.name, "kind": p.kind, "lo": p.lo, "hi": p.hi,
                               "choices": list(p.choices) if p.choices else None, "optional": p.optional}
                              for p in cmd.params],
                   "help": cmd.help, "reply": cmd.reply}
            for name, cmd in commands.COMMANDS.items()}


EXAMPLE_REQUEST = '{"id": 1, "command": "like", "args": []}'


def check_request(data) -> tuple[object, str, list]:
    """(id, command, args) of a page's message, or DeepDrummerError naming what is wrong."""
    if not isinstance(data, dict):
        raise WebRequestError(f"a page message is a JSON object like {EXAMPLE_REQUEST}, got {type(data).__name__}")
    req_id, name, args = data.get("id"), data.get("command"), data.get("args", [])
    if not isinstance(name, str) or not 0 < len(name) <= 64:
        raise WebRequestError(f"\"command\" must be a command name such as \"like\", got {name!r:.80}")
    if not isinstance(args, list) or len(args) > MAX_ARGS:
        raise WebRequestError(f"\"args\" must be a list of at most {MAX_ARGS} values, got {args!r:.80}")
    return req_id, name, args


class WebRequestError(DeepDrummerError):
    """A page message that is not a command call at all (bad JSON shape)."""


class WebServer:
    """The page's server. Construct (binds at once: a busy port is a start-up error), then `start(session)`."""

    def __init__(self, host: str, port: int, state_dir: Path):
        self.host = host
        self.library = Path(state_dir) / "library"
        self.token = None if is_loopback(host) else load_token(state_dir)
        self.assets = load_assets()
        self.sock = bind(host, port)
        self.port = self.sock.getsockname()[1]
        self.url = page_url(host, self.port, self.token)
        self.session = None
        self.clients: set[_Client] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Future | None = None
        self._ready = threading.Event()
        self._failed: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="web-server", daemon=True)
        # One worker: a page's clicks run in the order they were made (like, then undo).
        self._commands = ThreadPoolExecutor(max_workers=1, thread_name_prefix="web-command")
        self._views = ThreadPoolExecutor(max_workers=1, thread_name_prefix="web-view")
        self._last_snapshot: dict | None = None
        self._refresh_pending = False
        self._tasks: set[asyncio.Task] = set()  # the loop keeps only weak references to tasks

    # --- life cycle (called from the main thread) ----------------------------------------------------

    def start(self, session, timeout: float = 10.0) -> None:
        self.session = session
        session.add_listener(self._on_message)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise UsageError(f"the web page's server did not start within {timeout:g} s; run with --web-port 0 "
                             f"to go without it")
        if self._failed is not None:
            raise UsageError(f"the web page's server failed to start ({self._failed}); run with --web-port 0 "
                             f"to go without it")

    def stop(self) -> None:
        loop, stopping = self._loop, self._stopping
        if loop is not None and stopping is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(lambda: stopping.done() or stopping.set_result(None))
            except RuntimeError:
                log.debug("web server loop already closed")
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self._commands.shutdown(wait=False, cancel_futures=True)
        self._views.shutdown(wait=False, cancel_futures=True)
        self.sock.close()

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except Exception as exc:  # the daemon goes on without its page; the log keeps the traceback
            log.exception("web server stopped")
            self._failed = exc
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = self._loop.create_future()
        app = web.Application(middlewares=[self._guard], client_max_size=MAX_FRAME)
        app.router.add_get("/ws", self._websocket)
        app.router.add_get("/library", self._library_list)
        app.router.add_get("/library/{path:.+}", self._library_file)
        for path in ASSETS:
            app.router.add_get(path, self._asset)
        runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        await web.SockSite(runner, self.sock).start()
        poller = asyncio.create_task(self._poll())
        self._ready.set()
        try:
            await self._stopping
        finally:
            poller.cancel()
            for client in list(self.clients):
                await client.close(1001, "the daemon is stopping")
            await runner.cleanup()

    # --- HTTP ------------------------------------------------------------------------------------------

    def _host_ok(self, request: web.Request) -> bool:
        """On loopback, only loopback Host names: a DNS-rebinding site sends its own name."""
        if self.token is not None:
            return True
        host = urlsplit("//" + (request.host or "")).hostname or ""
        try:
            return host == "localhost" or ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False

    def _token_ok(self, request: web.Request) -> bool:
        if self.token is None:
            return True
        given = request.query.get("token", "")
        return hmac.compare_digest(given.encode(), self.token.encode())

    @web.middleware
    async def _guard(self, request: web.Request, handler):
        if not self._token_ok(request):
            return web.Response(status=403, text="403: this page needs its token. Open the address the daemon "
                                                 "printed at start (http://HOST:PORT/?token=...), or scan the QR "
                                                 "code on its terminal surface.\n")
        if not self._host_ok(request):
            return web.Response(status=403, text=f"403: Host {request.host!r} is not this machine; open "
                                                 f"{self.url}\n")
        return await handler(request)

    async def _asset(self, request: web.Request) -> web.Response:
        name, content_type = ASSETS[request.path]
        body = self.assets[name]
        if name == "index.html":
            query = f"?token={self.token}" if self.token else ""
            body = body.replace(TOKEN_PLACEHOLDER.encode(), query.encode())
        # no-cache: after an upgrade of the daemon, the page and its script must match
        return web.Response(body=body, content_type=content_type, charset="utf-8",
                            headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"})

    # --- the library ------------------------------------------------------------------------------------

    def library_entries(self) -> list[dict]:
        """The liked and saved loops with their files, newest first (by the .mid's time: a loop saved
        again later is new again)."""
        stems: dict[str, dict] = {}
        try:
            names = [p.name for p in self.library.iterdir()]
        except OSError as exc:  # the library folder gone: an empty list, and the log says why
            log.warning("library %s unreadable: %s", self.library, exc)
            return []
        for name in names:
            m = LIBRARY_FILE.fullmatch(name)
            if m is None:
                continue
            entry = stems.setdefault(m["stem"], {"loop_id": int(m["id"]), "name": m["name"], "files": {},
                                                 "kind": "liked" if m["name"] == "liked" else "saved"})
            entry["files"][m["ext"]] = "/library/" + name
        entries = [e for e in stems.values() if "mid" in e["files"] and "wav" in e["files"]]  # complete ones

        def written(e):
            try:
                return (self.library / e["files"]["mid"].rsplit("/", 1)[1]).stat().st_mtime
            except OSError:
                return 0.0
        entries.sort(key=lambda e: (written(e), e["loop_id"]), reverse=True)
        return entries[:LIBRARY_LIMIT]

    def library_path(self, relative: str) -> Path | None:
        """The library file `relative` names, or None when it is not one the library writes or lies
        outside it (a `..`, a link, an absolute path)."""
        if not (LIBRARY_FILE.fullmatch(relative) or LIBRARY_SAMPLE.fullmatch(relative)):
            return None
        root = self.library.resolve()
        path = (root / relative).resolve()
        if not path.is_relative_to(root) or not path.is_file():
            return None
        return path

    async def _library_list(self, request: web.Request) -> web.Response:
        entries = await asyncio.get_running_loop().run_in_executor(self._views, self.library_entries)
        return web.json_response({"loops": entries}, headers={"Cache-Control": "no-cache"})

    async def _library_file(self, request: web.Request) -> web.Response:
        relative = request.match_info["path"]
        path = await asyncio.get_running_loop().run_in_executor(self._views, self.library_path, relative)
        if path is None:
            return web.Response(status=404, text=f"404: {relative[:80]!r} is not a file of the loop library\n")
        body = await asyncio.get_running_loop().run_in_executor(self._views, path.read_bytes)
        ext = path.suffix.lstrip(".")
        return web.Response(body=body, content_type=LIBRARY_TYPES.get(ext, "application/octet-stream"),
                            headers={"Content-Disposition": f'attachment; filename="{path.name}"',
                                     "X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"})

    # --- WebSocket ---------------------------------------------------------------------------------

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if origin is not None and urlsplit(origin).netloc != request.host:
            return web.Response(status=403, text=f"403: WebSocket from another site ({origin}) refused\n")
        if len(self.clients) >= MAX_CLIENTS:
            return web.Response(status=503, text=f"503: {MAX_CLIENTS} pages are open already; close one\n")
        ws = web.WebSocketResponse(heartbeat=HEARTBEAT_S, max_msg_size=MAX_FRAME)
        await ws.prepare(request)
        client = _Client(ws, request.remote or "?", self._spawn)
        # Added before the snapshot so an event in between is kept, not lost; the client holds it
        # back until the hello has gone (the contract's first message).
        self.clients.add(client)
        try:
            snap = await self._snapshot()
            client.greet({"type": "hello", "commands": describe_commands(), "snapshot": snap, "url": self.url})
            log.info("web page connected from %s (%d open)", client.peer, len(self.clients))
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    await self._on_page_message(client, msg.data)
                elif msg.type == WSMsgType.ERROR:
                    log.debug("web page %s: %s", client.peer, ws.exception())
        finally:
            self.clients.discard(client)
            await client.close()
            log.info("web page from %s disconnected (%d open)", client.peer, len(self.clients))
        return ws

    async def _on_page_message(self, client: _Client, text: str) -> None:
        req_id = None
        try:
            data = json.loads(text)
        except ValueError as exc:
            client.send({"type": "result", "id": None, "ok": False,
                         "error": f"a page message must be JSON like {EXAMPLE_REQUEST}; got {text[:80]!r} ({exc})"})
            return
        try:
            req_id, name, args = check_request(data)
        except DeepDrummerError as exc:
            client.send({"type": "result", "id": data.get("id") if isinstance(data, dict) else None, "ok": False,
                         "error": str(exc)})
            return
        # Not awaited here: the next message is read while a rating waits to be durable; the one
        # worker thread keeps the order.
        self._spawn(self._run_command(client, req_id, name, args))

    def _spawn(self, coro) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_command(self, client: _Client, req_id, name: str, args: list) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._commands, commands.execute, self.session, name, args,
                                       ("web", client.peer))
        except DeepDrummerError as exc:
            client.send({"type": "result", "id": req_id, "ok": False, "error": str(exc)})
            # as for the OSC message: subscribers and the terminal surface hear of it too
            self.session.report_error(str(exc), "/dd/" + name[:64])
        except Exception as exc:  # a bug in a handler must reach the page and the log, not kill the server
            log.exception("web command %s%r failed", name, args)
            client.send({"type": "result", "id": req_id, "ok": False, "error": f"internal error: {exc!r}"})
        else:
            client.send({"type": "result", "id": req_id, "ok": True, "command": name})
        self._refresh_soon()

    # --- outbound --------------------------------------------------------------------------------------

    def _on_message(self, address: str, args: tuple, origin=None) -> None:
        """Session listener: called from any thread, so it only hands the message to our loop."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(self._broadcast_event, address, args)
        except RuntimeError:  # the loop closed between the check and the call (shutdown)
            log.debug("web server stopped; %s not pushed", address)

    def _broadcast_event(self, address: str, args: tuple) -> None:
        self._broadcast({"type": "event", "address": address, "args": plain(args)})
        self._refresh_soon()

    def _broadcast(self, message: dict) -> None:
        if not self.clients:
            return
        text = json.dumps(message)
        # Before its hello a page needs no snapshot or playhead: the hello brings a fresher one.
        state_only = message["type"] in ("snapshot", "step")
        for client in list(self.clients):
            if state_only and not client.greeted:
                continue
            client.send_text(text)

    def _refresh_soon(self) -> None:
        """A snapshot after an event (counts, locks, levels): one per burst of events."""
        if self._refresh_pending or self._loop is None:
            return
        self._refresh_pending = True
        self._spawn(self._push_snapshot())

    async def _push_snapshot(self) -> None:
        self._refresh_pending = False
        snap = await self._snapshot()
        self._publish(snap)

    async def _snapshot(self) -> dict:
        # In a worker thread: the session's lock may be held while it renders the next loop's audio.
        return plain(await asyncio.get_running_loop().run_in_executor(self._views, self.session.snapshot))

    def _publish(self, snap: dict) -> None:
        last = self._last_snapshot or {}
        self._last_snapshot = snap
        without_step = {k: v for k, v in snap.items() if k != "step"}
        if without_step != {k: v for k, v in last.items() if k != "step"}:
            self._broadcast({"type": "snapshot", "snapshot": snap})
        elif snap.get("step") != last.get("step"):
            self._broadcast({"type": "step", "step": snap.get("step"), "playing": snap.get("playing")})

    async def _poll(self) -> None:
        """The playhead and unannounced changes, while at least one page is open."""
        while True:
            await asyncio.sleep(1.0 / POLL_HZ)
            if not self.clients:
                self._last_snapshot = None
                continue
            try:
                self._publish(await self._snapshot())
            except Exception:  # a failing snapshot must not end the page's updates for good
                log.exception("web page: session snapshot failed")
                await asyncio.sleep(1.0)


class _Client:
    """One open page: its socket and a bounded queue drained by its own writer task."""

    def __init__(self, ws: web.WebSocketResponse, peer: str, spawn):
        self.ws = ws
        self.peer = peer
        self.spawn = spawn
        self.queue: asyncio.Queue[str | None] = asyncio.Queue(maxsize=MAX_QUEUED)
        self.early: list[str] = []  # events that came before the hello: sent right after it
        self.greeted = False
        self.writer = asyncio.ensure_future(self._write())

    def greet(self, hello: dict) -> None:
        """The first message; then whatever arrived while its snapshot was taken, in order."""
        self.greeted = True
        self.send(hello)
        early, self.early = self.early, []
        for text in early:
            self.send_text(text)

    def send(self, message: dict) -> None:
        self.send_text(json.dumps(plain(message)))

    def send_text(self, text: str) -> None:
        if not self.greeted:
            self.early.append(text)
            if len(self.early) > MAX_QUEUED:
                log.warning("web page %s: too many events before its hello; dropping it", self.peer)
                self.spawn(self.close(1013, "too slow: reconnect"))
            return
        try:
            self.queue.put_nowait(text)
        except asyncio.QueueFull:
            log.warning("web page %s stopped reading; dropping it", self.peer)
            self.spawn(self.close(1013, "too slow: reconnect"))

    async def _write(self) -> None:
        while True:
            text = await self.queue.get()
            if text is None or self.ws.closed:
                return
            try:
                await self.ws.send_str(text)
            except (ConnectionError, RuntimeError) as exc:  # the page went away mid-send
                log.debug("web page %s: send failed: %s", self.peer, exc)
                return

    async def close(self, code: int = 1000, reason: str = "") -> None:
        self.writer.cancel()
        if not self.ws.closed:
            await self.ws.close(code=code, message=reason.encode())
