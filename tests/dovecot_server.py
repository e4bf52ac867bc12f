"""A private Dovecot IMAP server on a loopback port, for the email channel's IMAP tests.

Its configuration, passwords, state and maildirs live in a temporary directory of its own; no
system service is touched. As root, Dovecot refuses to run its login and mail processes as
root, so they run as ``nobody`` (and the directory is open to it); as anyone else, as that
user. Tests deliver mail with the standard library's ``imaplib``, an independent client.
"""

from __future__ import annotations

import contextlib
import grp
import imaplib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.conftest import require_service

BINARY = "/usr/sbin/dovecot"
USER = "support@example.com"
PASSWORD = "imap-pass-1"
# A fresh Dovecot answers within a second; this only bounds a broken start.
# Generous for a loaded shared CI machine; a healthy start takes well under a second.
START_TIMEOUT_S = 30.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _runs_as() -> tuple[str, str]:
    if os.geteuid() == 0:
        return "nobody", grp.getgrgid(pwd.getpwnam("nobody").pw_gid).gr_name
    return pwd.getpwuid(os.geteuid()).pw_name, grp.getgrgid(os.getegid()).gr_name


CONFIG = """\
protocols = imap
listen = 127.0.0.1
base_dir = {root}/run
state_dir = {root}/state
instance_name = liveop-test-{port}
default_internal_user = {user}
default_internal_group = {group}
default_login_user = {user}
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
log_path = {root}/dovecot.log
mail_location = maildir:{root}/mail/%u
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = uid={user} gid={group} home={root}/mail/%u
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service anvil {{
  chroot =
}}
protocol imap {{
  mail_max_userip_connections = 50
}}
"""


class Dovecot:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = _free_port()
        user, group = _runs_as()
        (root / "mail").mkdir()
        (root / "mail").chmod(0o777)
        (root / "passwd").write_text(f"{USER}:{{PLAIN}}{PASSWORD}\n")
        self.config = root / "dovecot.conf"
        self.config.write_text(CONFIG.format(root=root, port=self.port, user=user, group=group))
        self._process: subprocess.Popen[bytes] | None = None

    def url(self, mailbox: str = "INBOX", port: int | None = None) -> str:
        return f"imap://{quote(USER, safe='')}:{PASSWORD}@127.0.0.1:{port or self.port}/{mailbox}"

    def start(self) -> None:
        self._process = subprocess.Popen(
            [BINARY, "-F", "-c", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._greets():
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                log = self.root / "dovecot.log"
                text = log.read_text(errors="replace") if log.exists() else ""
                raise RuntimeError(f"dovecot did not start on {self.port}:\n{text[-2000:]}")
            time.sleep(0.05)

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=START_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def _greets(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as conn:
                return conn.recv(4).startswith(b"* OK")
        except OSError:
            return False

    @contextlib.contextmanager
    def session(self) -> Iterator[imaplib.IMAP4]:
        """A logged-in stdlib client: how the tests deliver and look at mail."""
        client = imaplib.IMAP4("127.0.0.1", self.port, timeout=START_TIMEOUT_S)
        try:
            client.login(USER, PASSWORD)
            yield client
        finally:
            with contextlib.suppress(OSError, imaplib.IMAP4.error):
                client.logout()

    def deliver(self, raw: bytes, mailbox: str = "INBOX") -> None:
        with self.session() as client:
            status, _ = client.append(mailbox, None, None, raw)
            assert status == "OK"

    def flags(self, mailbox: str = "INBOX") -> list[str]:
        """Each message's flags, in UID order."""
        with self.session() as client:
            client.select(mailbox, readonly=True)
            status, data = client.uid("FETCH", "1:*", "(FLAGS)")
            assert status == "OK"
            return [str(d) for d in data if d]


@pytest.fixture
def dovecot() -> Iterator[Dovecot]:
    if not Path(BINARY).exists():
        require_service(f"{BINARY} (Debian's dovecot-imapd) is not installed")
    # Not pytest's tmp_path: its parents are closed to the user Dovecot's processes run as.
    root = Path(tempfile.mkdtemp(prefix="liveop-dovecot-"))
    root.chmod(0o755)
    server = Dovecot(root)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
