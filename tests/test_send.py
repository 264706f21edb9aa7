"""`deepdrummer-live send` (contract v1.1) against a real daemon over UDP, and against bare UDP sockets
that stand for a daemon that is silent or gone."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from deepdrummer_live.client import decode

from daemon import CLI, REPO, Daemon, OscClient, free_udp_port


def send(port: int, *argv: str, timeout: float = 5.0) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, "send", "--port", str(port), "--timeout", str(timeout), *argv], cwd=REPO,
                          capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    d = Daemon(tmp_path_factory.mktemp("send") / "state").start()
    yield d
    assert d.stop() == 0, d.output()


def status(port: int) -> list:
    client = OscClient(port)
    try:
        client.send("/dd/status")
        return client.expect("/dd/status")
    finally:
        client.close()


def test_ping_prints_pong(daemon):
    out = send(daemon.port, "/dd/ping")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["/dd/pong"]


def test_status_prints_its_fields(daemon):
    out = send(daemon.port, "/dd/status")
    assert out.returncode == 0, out.stderr
    address, likes, dislikes, loop_id, mode, device, steps = out.stdout.split()
    assert address == "/dd/status" and int(loop_id) >= 0 and mode in ("explore", "good", "bad", "random")


def test_like_waits_for_the_durable_rating(daemon):
    before = status(daemon.port)
    out = send(daemon.port, "/dd/like")
    assert out.returncode == 0, out.stderr
    address, loop_id, label, likes, dislikes = out.stdout.split()
    assert (address, label, int(loop_id)) == ("/dd/rated", "like", before[2])
    assert int(likes) == before[0] + 1
    assert status(daemon.port)[0] == before[0] + 1  # counted by the daemon, not only printed


def test_dislike_of_an_explicit_loop_id(daemon):
    loop_id = status(daemon.port)[2]
    out = send(daemon.port, "/dd/dislike", str(loop_id))
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[:3] == ["/dd/rated", str(loop_id), "dislike"]


def test_error_exits_1_with_the_message_on_stderr(daemon):
    out = send(daemon.port, "/dd/tempo", "1000")
    assert out.returncode == 1
    assert out.stdout.startswith("/dd/error ") and "1000" in out.stdout
    assert "1000" in out.stderr and "20" in out.stderr  # the bad value and the valid range


def test_an_integer_literal_is_sent_as_an_int(daemon):
    out = send(daemon.port, "/dd/mode", "3")  # 'i', and mode wants a string
    assert out.returncode == 1 and "string" in out.stderr, out.stdout + out.stderr


def test_address_without_reply_succeeds_when_no_error_comes(daemon):
    out = send(daemon.port, "/dd/mode", "explore", timeout=0.5)
    assert out.returncode == 0, out.stderr
    assert out.stdout == ""


def test_save_prints_the_library_files(daemon):
    out = send(daemon.port, "/dd/save", "from send", timeout=30)
    assert out.returncode == 0, out.stderr
    address, loop_id, rest = out.stdout.rstrip("\n").split(" ", 2)
    assert address == "/dd/saved"
    mid = rest[:rest.index(".mid") + 4]
    assert "from send" in mid and (daemon.state_dir / "library").exists()


def test_no_daemon_exits_2():
    out = send(free_udp_port(), "/dd/ping", timeout=1)
    assert out.returncode == 2
    assert "daemon" in out.stderr


def test_silent_daemon_exits_2_after_the_timeout_for_an_expected_reply():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        out = send(silent.getsockname()[1], "/dd/like", timeout=0.3)
        assert silent.recv(1024).startswith(b"/dd/like")
    assert out.returncode == 2
    assert "/dd/rated" in out.stderr and "0.3" in out.stderr


def test_silent_daemon_is_success_when_no_reply_is_expected():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        out = send(silent.getsockname()[1], "/dd/next", timeout=0.3)
    assert out.returncode == 0, out.stderr


def test_argument_types_integer_decimal_string():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as fake:
        fake.bind(("127.0.0.1", 0))
        send(fake.getsockname()[1], "/dd/x", "12", "-3", "1.5", ".25", "-2.", "1e3", "abc", "-", "1.2.3", "0x10",
             "--y", timeout=0.2)
        (msg,) = decode(fake.recv(65536))
    assert msg.address == "/dd/x"
    assert list(msg.args) == [12, -3, 1.5, 0.25, -2.0, 1000.0, "abc", "-", "1.2.3", "0x10", "--y"]
    assert [type(p) for p in msg.args] == [int, int, float, float, float, float, str, str, str, str, str]


def test_replies_are_printed_one_per_line_with_32_bit_floats():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as fake:
        fake.bind(("127.0.0.1", 0))
        proc = subprocess.Popen([*CLI, "send", "--port", str(fake.getsockname()[1]), "/dd/status"], cwd=REPO,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        fake.settimeout(30)
        _, sender = fake.recvfrom(65536)
        from daemon import build

        fake.sendto(build("/dd/status", 3, 0.73, "a b"), sender)
        stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    assert stdout == "/dd/status 3 0.73 a b\n"


@pytest.mark.parametrize("argv, needle", [
    (["dd/like"], "starts with /"),
    (["/dd/like", "99999999999"], "99999999999"),
    (["--timeout", "0", "/dd/ping"], "--timeout"),
    (["--port", "70000", "/dd/ping"], "70000"),
    (["--host", "no-such-host.invalid", "/dd/ping"], "no-such-host.invalid"),
])
def test_bad_usage_exits_2_with_one_line(argv, needle):
    out = subprocess.run([*CLI, "send", *argv], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and needle in lines[0], out.stderr


def test_send_waits_for_the_reply_of_every_command_in_the_table():
    """One definition: send's expected answers are the command table's `reply=`, never a copy that drifts."""
    from deepdrummer_live.cli import send as send_cli
    from deepdrummer_live.commands import COMMANDS

    assert {c.address: send_cli.expected_reply(c.address) for c in COMMANDS.values()} == {
        c.address: c.reply for c in COMMANDS.values()}
    assert send_cli.expected_reply("/dd/undo") == "/dd/undone"  # the ones a copy once missed
    assert send_cli.expected_reply("/dd/experiment") == "/dd/experiment"
    assert send_cli.expected_reply("/dd/next") is None


def test_undo_waits_past_other_messages_for_undone():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as fake:
        fake.bind(("127.0.0.1", 0))
        proc = subprocess.Popen([*CLI, "send", "--port", str(fake.getsockname()[1]), "--timeout", "20", "/dd/undo"],
                                cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        fake.settimeout(30)
        _, sender = fake.recvfrom(65536)
        from daemon import build

        fake.sendto(build("/dd/levels", 1, "9..."), sender)  # not the answer: printed, and send waits on
        fake.sendto(build("/dd/undone", 7, 2, 1), sender)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert out.splitlines() == ["/dd/levels 1 9...", "/dd/undone 7 2 1"]


def test_send_imports_no_torch():
    """What a DAW macro runs per button press: torch (seconds to import) and numpy must stay out."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as fake:
        fake.bind(("127.0.0.1", 0))
        out = subprocess.run([sys.executable, "-X", "importtime", "-m", "deepdrummer_live.cli.main", "send",
                              "--port", str(fake.getsockname()[1]), "--timeout", "0.1", "/dd/next"],
                             cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    modules = {line.split("|")[-1].strip() for line in out.stderr.splitlines() if line.startswith("import time:")}
    assert "deepdrummer_live.cli.send" in modules  # the measurement saw the real imports
    heavy = sorted(m for m in modules if m.split(".")[0] in ("torch", "numpy", "librosa", "aiohttp", "mido"))
    assert heavy == []
