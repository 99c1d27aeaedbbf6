"""The real server for tests: gunicorn with the gevent worker, as a subprocess, set up through
the operator CLI (`flask users create`, `flask keys create`) like a deployment would be; and a
socket wrapper that records each send, for what goes on the wire."""

import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import time

import requests

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)


class CountingSocket:
    """A connected socket that records what each send hands the kernel (for send(), what the
    kernel took)."""

    def __init__(self, sock):
        self.sock, self.sent = sock, []

    def sendall(self, data, *args):
        self.sent.append(bytes(data))
        return self.sock.sendall(data, *args)

    def send(self, data, *args):
        taken = self.sock.send(data, *args)
        self.sent.append(bytes(data[:taken]))
        return taken

    def fileno(self):
        return self.sock.fileno()

    def __getattr__(self, name):
        return getattr(self.sock, name)


def _die_with_parent():
    """Linux: the server gets SIGTERM when the test process dies, even if killed outright."""
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class GunicornServer:
    def __init__(self, tmp_path, *, providers, database_url=None, workers=1, env=None,
                 app="wsgi:app"):
        self.tmp_path, self.app = tmp_path, app
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = tmp_path / f"gunicorn-{self.port}.log"
        self.env = {
            **os.environ,
            "GATEWAY_CONFIG": str(tmp_path / "absent.toml"),
            "GATEWAY_PROVIDERS": json.dumps(providers),
            "DATABASE_URL": database_url or f"sqlite:///{tmp_path}/live.db",
            "TOLLGATE_BIND": f"127.0.0.1:{self.port}",
            "WEB_CONCURRENCY": str(workers),
            "FLASK_APP": "app",
            "REDIS_URL": "",  # per-process limits unless a test passes Redis with its own prefix
            **(env or {}),
        }
        self.proc = None

    def flask(self, *args) -> str:
        """Run an operator command against this server's database; returns its stdout."""
        done = subprocess.run([os.path.join(BIN, "flask"), *args], cwd=ROOT, env=self.env,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def create_key(self, user="alice", credits="1000") -> str:
        if user not in self.flask("users", "list"):
            self.flask("users", "create", user)
            if credits:
                self.flask("credits", "grant", user, credits, "--reason", "test")
        from tests import canaries
        out = self.flask("keys", "create", user).strip()
        canaries.add(out.splitlines()[-1].strip())
        return out

    def start(self):
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [os.path.join(BIN, "gunicorn"), "-c", "gunicorn.conf.py", self.app],
            cwd=ROOT, env=self.env, stdout=self.log, stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.logs()
            try:
                requests.get(f"{self.url}/v1/models", timeout=5)
                return self
            except requests.RequestException:  # not listening yet, or slow on a loaded machine
                time.sleep(0.1)
        raise AssertionError("gunicorn did not start:\n" + self.logs())

    def logs_tail(self, size: int = 4000) -> str:
        return self.log_path.read_text()[-size:]

    def logs(self) -> str:
        self.log.flush()
        return self.log_path.read_text()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        self.scan_for_canaries()
        # gevent warns when it patches after ssl, threading or socket were imported: the
        # workers would then block on some sockets. (PYTHONWARNINGS cannot turn this warning
        # into an error: it is parsed before the virtualenv's gevent can be imported.)
        assert "MonkeyPatchWarning" not in self.log_path.read_text(), self.logs_tail()

    def scan_for_canaries(self):
        """No canary secret in this server's log or in its database's rows."""
        from sqlalchemy import create_engine

        from tests import canaries
        canaries.scan(self.log_path.read_text(), f"gunicorn log {self.log_path.name}")
        engine = create_engine(self.env["DATABASE_URL"].replace("postgresql://",
                                                                "postgresql+psycopg://", 1))
        try:
            canaries.scan_rows(engine, "gunicorn database")
        finally:
            engine.dispose()
