"""Security: loopback-only OSC unless --osc-allow, save names that cannot escape the library, weights-only
checkpoints (a pickle with code in critic.pt never runs), state dir 0700, kits and state dirs are data."""

from __future__ import annotations

import logging
import os
import socket
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

from deepdrummer_live import client as dd_client
from deepdrummer_live.errors import CommandError, UsageError
from deepdrummer_live.storage.library import check_name
from deepdrummer_live.surfaces import osc

from daemon import Daemon, OscClient


def local_non_loopback_ip() -> str | None:
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("10.255.255.255", 1))  # no packet is sent; picks the outgoing interface
            ip = s.getsockname()[0]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((ip, 0))
        return None if ip.startswith("127.") else ip
    except OSError:
        return None


def test_a_non_loopback_bind_serves_only_loopback_until_osc_allow_and_says_so(tmp_path, caplog):
    # --osc-host is where it listens (the contract); who may control it is --osc-allow's
    with caplog.at_level(logging.WARNING, logger="deepdrummer_live.surfaces.osc"):
        bare = osc.OscServer("0.0.0.0", 0)
    try:
        assert "--osc-allow" in caplog.text
        assert bare.allowed("127.0.0.1") and not bare.allowed("192.168.1.5")
        bare.session = None
        for _ in range(3):
            bare.handle_datagram(osc.encode("/dd/ping"), ("192.168.1.5", 4000))
        assert bare.counts["dropped_not_allowed"] == 3
        refused = [r for r in caplog.records if "192.168.1.5" in r.getMessage()]
        assert len(refused) == 1 and "--osc-allow 192.168.1.5/32" in refused[0].getMessage()  # named once
    finally:
        bare.sock.close()
    with pytest.raises(UsageError, match="--osc-allow"):
        osc.OscServer("0.0.0.0", 0, allow=["not-a-network"])
    srv = osc.OscServer("0.0.0.0", 0, allow=["10.0.0.0/8"])
    try:
        for ip, ok in (("127.0.0.1", True), ("10.9.8.7", True), ("192.168.1.5", False), ("::1", True),
                       ("not-an-ip", False)):
            assert srv.allowed(ip) is ok, ip
        srv.session = None
        srv.handle_datagram(osc.encode("/dd/ping"), ("192.168.1.5", 4000))
        assert srv.counts["dropped_not_allowed"] == 1
    finally:
        srv.sock.close()

    ip = local_non_loopback_ip()
    d = Daemon(tmp_path / "state", "--osc-host", "0.0.0.0", "--osc-allow", "10.0.0.0/8")
    d.start()
    try:
        c = OscClient(d.port)
        c.send("/dd/ping")
        assert c.expect("/dd/pong") == []  # loopback is always allowed
        c.close()
        if ip is not None and not ip.startswith("10."):
            with dd_client.OscClient(d.port, ip, listen_host=ip) as stranger:
                stranger.send("/dd/ping")
                # from outside the allowed networks: dropped, no answer (the ping above shows one comes in time)
                assert stranger.wait("/dd/pong", 0.5) is None
    finally:
        assert d.stop() == 0, d.output()


@pytest.mark.parametrize("name", ["..", "../x", "a/b", "/etc/passwd", "a\\b", "C:x", ".hidden", "x" * 65, "",
                                  "a\0b", "caf\u00e9", "new\nline", "~root"])
def test_save_names_cannot_escape(name):
    with pytest.raises(CommandError):
        check_name(name)


@pytest.mark.parametrize("name", ["a", "my groove_1", "x" * 64, "   ", "-_- 42"])
def test_save_names_the_contract_allows(name):
    assert check_name(name) == name  # 1-64 of letters, digits, space, '-', '_' (protocol.md)


def test_malicious_checkpoint_and_state_dir_never_execute(tmp_path):
    """critic.pt is a pickle that would create a marker when unpickled; the state dir holds Python files.
    The daemon must start with a fresh critic, log a warning, and run none of it."""
    marker = tmp_path / "PWNED"
    state = tmp_path / "state"
    state.mkdir(mode=0o755)
    os.chmod(state, 0o755)

    class Evil:
        def __reduce__(self):
            return (os.mkdir, (str(marker),))

    torch.save({"model": Evil(), "config": "lean", "train_steps": 99, "version": 1}, state / "critic.pt")
    for name in ("sitecustomize.py", "usercustomize.py", "deepdrummer_live.py", "torch.py", "numpy.py"):
        (state / name).write_text(f"import os\nos.mkdir({str(marker)!r})\n")
    (state / "library").mkdir()
    (state / "library" / "__init__.py").write_text(f"import os\nos.mkdir({str(marker)!r})\n")

    c = OscClient(0)
    d = Daemon(state, "--notify", f"127.0.0.1:{c.port}", env={"PYTHONPATH": ""})
    c.target = ("127.0.0.1", d.port)
    d.start()
    try:
        c.drain(0.2)
        c.send("/dd/status")
        assert c.expect("/dd/status")[5] == 0  # train_steps: a fresh critic, not the checkpoint's 99
        assert not marker.exists()
        assert "unreadable" in d.output() and "critic.pt" in d.output()
        assert (state.stat().st_mode & 0o777) == 0o700  # tightened on start
        for bad in ("../escape", "..", "/tmp/abs", "a/b", "x\\y"):
            c.send("/dd/save", bad)
            assert c.expect("/dd/error")[1] == "/dd/save"
        c.send("/dd/save", "ok name")
        _, mid, wav = c.expect("/dd/saved", timeout=15)
        assert os.path.dirname(mid) == os.path.dirname(wav) == str(state / "library")
    finally:
        c.close()
        assert d.stop() == 0, d.output()
    assert not marker.exists()
    files = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()}
    outside = {f for f in files if not f.startswith("state/")} - {"state-daemon.log"}
    assert outside == set(), outside  # nothing written outside the state dir


def test_fresh_state_dir_is_0700(tmp_path):
    from deepdrummer_live.storage.store import Store

    s = Store(tmp_path / "a" / "b" / "state")
    try:
        assert (s.dir.stat().st_mode & 0o777) == 0o700
        assert ((s.dir / "library").stat().st_mode & 0o777) == 0o700
    finally:
        s.close()


def test_kit_folder_is_data_only(tmp_path):
    """A kit.toml with code-looking strings and Python files beside the samples: nothing runs."""
    from deepdrummer_live.errors import KitError
    from deepdrummer_live.sound.kit import load_kit

    marker = tmp_path / "PWNED"
    kit = tmp_path / "evilkit"
    kit.mkdir()
    rng = np.random.default_rng(0)
    for name in ("kick", "snare", "hat", "tom"):
        sf.write(kit / f"{name}.wav", (rng.standard_normal(4410) * 0.3).astype(np.float32), 44100)
    code = f"__import__('os').mkdir({str(marker)!r})"
    for name in ("__init__.py", "kit.py", "sitecustomize.py"):
        (kit / name).write_text(code + "\n")
    (kit / "kit.toml").write_text(f'name = "{code}"\n[[sample]]\nfile = "kick.wav"\nrole = "kick"\n')
    sys_path = list(sys.path)
    try:
        loaded = load_kit(str(kit))
        assert len(loaded) == 4
    except KitError:
        pass  # refusing the kit is fine too; running anything is not
    assert sys.path == sys_path and not marker.exists()
    (kit / "kit.toml").write_text(f'[[sample]]\nfile = "../../{tmp_path.name}/x.wav"\nrole = "{code}"\n')
    with pytest.raises(KitError):
        load_kit(str(kit))
    assert not marker.exists()
