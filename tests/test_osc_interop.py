"""OSC with an implementation other than python-osc: liblo's `oscsend` and `oscdump` (Debian's
liblo-tools) against the real daemon over UDP. (Pure Data's own OSC is in test_puredata.py.)"""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from daemon import Daemon, OscClient, free_udp_port, wait_for

OSCSEND = shutil.which("oscsend")
OSCDUMP = shutil.which("oscdump")

pytestmark = pytest.mark.skipif(not (OSCSEND and OSCDUMP),
                                reason="needs liblo's oscsend/oscdump (apt-get install liblo-tools)")


def oscsend(port: int, address: str, types: str = "", *args) -> None:
    subprocess.run([OSCSEND, "127.0.0.1", str(port), address, types, *map(str, args)], check=True, timeout=10)


class OscDump:
    """`oscdump -L PORT` writing to a file; messages parsed back from its text lines.

    A line is `TIMETAG /address TYPES ARG...`, strings in double quotes.
    """

    def __init__(self, path: Path):
        self.port = free_udp_port()
        self.path = path
        self.file = open(path, "w")
        self.proc = subprocess.Popen([OSCDUMP, "-L", str(self.port)], stdout=self.file, stderr=subprocess.STDOUT)
        self.seen = 0  # lines already returned by next()

    def messages(self) -> list[tuple[str, str, list]]:
        out = []
        for line in self.path.read_text().splitlines():
            fields = shlex.split(line)
            if len(fields) >= 2 and fields[1].startswith("/"):
                types = fields[2] if len(fields) > 2 else ""
                values = [int(v) if t == "i" else float(v) if t == "f" else v
                          for t, v in zip(types, fields[3:])]
                out.append((fields[1], types, values))
        return out

    def next(self, address: str, timeout: float = 10.0) -> tuple[str, list]:
        """(types, args) of the first `address` message after those already returned."""
        def arrived() -> tuple[str, list] | None:
            assert self.proc.poll() is None, self.path.read_text()
            msgs = self.messages()
            for i in range(self.seen, len(msgs)):
                if msgs[i][0] == address:
                    self.seen = i + 1
                    return msgs[i][1], msgs[i][2]
            return None

        return wait_for(arrived, timeout, lambda: f"{address} in oscdump's output: {self.path.read_text()[-2000:]}",
                        interval=0.05)

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        self.file.close()


def test_oscsend_rates_and_oscdump_receives_typed_replies(tmp_path):
    dump = OscDump(tmp_path / "oscdump.txt")
    d = Daemon(tmp_path / "state")
    d.start()
    probe = OscClient(d.port)
    try:
        # oscdump's socket is up once a subscribed /dd/ping comes back to it
        def subscribed() -> bool:
            oscsend(d.port, "/dd/subscribe", "i", dump.port)
            oscsend(d.port, "/dd/ping")
            try:
                dump.next("/dd/pong", timeout=1.0)
                return True
            except AssertionError:
                assert dump.proc.poll() is None, dump.path.read_text()
                return False

        wait_for(subscribed, 15, "a subscribed /dd/pong at oscdump (its socket is up)", interval=0.0)

        oscsend(d.port, "/dd/next")
        types, loop = dump.next("/dd/loop")
        n_rows = (len(loop) - 4) // 3
        assert types == "iffi" + "sis" * n_rows and n_rows >= 1
        assert len(loop[6]) == loop[3] and set(loop[6]) <= {"x", "."}

        oscsend(d.port, "/dd/like")  # no argument: the current loop
        types, rated = dump.next("/dd/rated")
        assert (types, rated) == ("isii", [loop[0], "like", 1, 0])

        # liblo sends an integral float where an int is expected (as Pd and Max do): accepted
        types, loop2 = dump.next("/dd/loop")
        oscsend(d.port, "/dd/dislike", "f", float(loop2[0]))
        assert dump.next("/dd/rated") == ("isii", [loop2[0], "dislike", 1, 1])

        # and an int where a float is expected
        oscsend(d.port, "/dd/tempo", "i", 101)
        oscsend(d.port, "/dd/tempo", "s", "fast")
        types, err = dump.next("/dd/error")
        assert types == "ss" and err[1] == "/dd/tempo" and "fast" in err[0]

        # the ratings are stored: a python-osc client sees them in /dd/status
        probe.send("/dd/status")
        status = probe.expect("/dd/status")
        assert status[:2] == [1, 1]
        oscsend(d.port, "/dd/next")
        assert dump.next("/dd/loop")[1][2] == 101.0
    finally:
        probe.close()
        dump.close()
        assert d.stop() == 0, d.output()
