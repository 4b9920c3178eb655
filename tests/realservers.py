"""Real components for the integration tests and benchmarks: a throw-away
TLS CA and certificates, a redis-server and a PostgreSQL server, each started
on a free loopback port in a temporary directory and stopped afterwards.

The servers are the Debian packages' programs (redis-server, postgresql);
``missing()`` says why one cannot run here (then the tests skip).  .ci/run
installs them.
"""

from __future__ import annotations

import datetime
import glob
import ipaddress
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any


def free_port() -> int:
    """A loopback port that was free a moment ago (a server binds it next)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------
# TLS

class TlsCerts:
    """Paths of the PEM files the TLS tests use: ``ca`` (the CA's
    certificate, to verify with), ``server`` (the server's certificate and
    key, signed by the CA, for localhost and 127.0.0.1), ``other`` (a
    certificate and key for another name, signed by the same CA)."""

    def __init__(self, directory: Path) -> None:
        self.ca = directory / "ca.pem"
        self.server = directory / "server.pem"
        self.other = directory / "other.pem"


def make_tls_certs(directory: Path) -> TlsCerts:
    """Make a CA and two certificates it signs, into ``directory`` (with the
    ``cryptography`` package)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    valid = (now - datetime.timedelta(days=1), now + datetime.timedelta(days=30))

    def builder(subject: str, issuer: str, key: Any) -> Any:
        return (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
                .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(valid[0]).not_valid_after(valid[1]))

    def pem(cert: Any, key: Any = None) -> bytes:
        out = cert.public_bytes(serialization.Encoding.PEM)
        if key is not None:
            out += key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption())
        return out

    # Key identifiers too: Python 3.13's default contexts verify strictly
    # (VERIFY_X509_STRICT), which requires them.
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca = (builder("fastco test CA", "fastco test CA", ca_key)
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(ca_ski, critical=False)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False,
                                       encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    certs = TlsCerts(directory)
    certs.ca.write_bytes(pem(ca))
    for path, names in ((certs.server, ["localhost", "127.0.0.1"]),
                        (certs.other, ["other.example"])):
        key = ec.generate_private_key(ec.SECP256R1())
        sans = [x509.IPAddress(ipaddress.ip_address(n)) if n[0].isdigit() else x509.DNSName(n)
                for n in names]
        cert = (builder(names[0], "fastco test CA", key)
                .add_extension(x509.SubjectAlternativeName(sans), critical=False)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                               critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
                    ca_ski), critical=False)
                .sign(ca_key, hashes.SHA256()))
        path.write_bytes(pem(cert, key))
    return certs


# ---------------------------------------------------------------------------
# Servers

class _Server:
    """A server process in a temporary directory: a context manager that
    starts it, waits until it answers, and stops it (and removes the
    directory) at the end."""

    name = "server"
    start_timeout = 30.0

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix=f"fastco-{self.name}-"))
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = self.dir / "server.log"

    def command(self) -> list[str]:
        raise NotImplementedError

    def popen_kwargs(self) -> dict[str, Any]:
        return {}

    def prepare(self) -> None:
        """Set up the directory before the server starts."""

    def stop_signal(self) -> int:
        return signal.SIGTERM

    def __enter__(self) -> _Server:
        try:
            self.prepare()
            with open(self.log, "wb") as log:
                self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                             stdin=subprocess.DEVNULL, **self.popen_kwargs())
            self._wait_ready()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        while True:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with status {self.proc.returncode}: "
                                   f"{self.log.read_text(errors='replace')[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    if self.answers(s):
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not answer on port {self.port} within "
                                   f"{self.start_timeout} s: "
                                   f"{self.log.read_text(errors='replace')[-2000:]}")
            time.sleep(0.05)

    def answers(self, sock: socket.socket) -> bool:
        return True

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(self.stop_signal())
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


class RedisServer(_Server):
    """redis-server on 127.0.0.1:port, nothing saved to disk."""

    name = "redis"

    @staticmethod
    def missing() -> str:
        """Why no redis-server can run here ('' if it can)."""
        if shutil.which("redis-server") is None:
            return "redis-server is not installed (Debian package redis-server)"
        return ""

    def command(self) -> list[str]:
        return ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--dir", str(self.dir),
                "--daemonize", "no", "--protected-mode", "yes"]

    def answers(self, sock: socket.socket) -> bool:
        sock.sendall(b"PING\r\n")
        return sock.recv(100).startswith(b"+PONG")


def _postgres_bindir() -> Path | None:
    for candidate in [shutil.which("initdb")] + sorted(
            glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True):
        if candidate and os.access(candidate, os.X_OK):
            return Path(os.path.realpath(candidate)).parent
    return None


class PostgresServer(_Server):
    """PostgreSQL on 127.0.0.1:port with a fresh cluster (initdb) in a
    temporary directory, trust authentication for the user ``fastco``.
    PostgreSQL refuses to run as root: then the cluster belongs to, and the
    server runs as, the ``postgres`` system user (or ``nobody``)."""

    name = "postgres"
    user = "fastco"
    database = "postgres"

    @staticmethod
    def missing() -> str:
        """Why no PostgreSQL can run here ('' if it can)."""
        if _postgres_bindir() is None:
            return "PostgreSQL is not installed (Debian package postgresql: initdb, postgres)"
        return ""

    def __init__(self) -> None:
        super().__init__()
        self.bindir = _postgres_bindir()
        self.data = self.dir / "data"
        self.run_as: pwd.struct_passwd | None = None
        if os.geteuid() == 0:
            for name in ("postgres", "nobody"):
                try:
                    self.run_as = pwd.getpwnam(name)
                    break
                except KeyError:
                    pass

    def popen_kwargs(self) -> dict[str, Any]:
        if self.run_as is None:
            return {}
        return {"user": self.run_as.pw_uid, "group": self.run_as.pw_gid,
                "extra_groups": [], "cwd": str(self.dir)}

    def prepare(self) -> None:
        assert self.bindir is not None
        if self.run_as is not None:
            os.chown(self.dir, self.run_as.pw_uid, self.run_as.pw_gid)
        subprocess.run([str(self.bindir / "initdb"), "-D", str(self.data), "-U", self.user,
                        "--auth=trust", "-E", "UTF8", "--no-sync"],
                       check=True, capture_output=True, timeout=120, **self.popen_kwargs())

    def command(self) -> list[str]:
        assert self.bindir is not None
        return [str(self.bindir / "postgres"), "-D", str(self.data), "-h", "127.0.0.1",
                "-p", str(self.port), "-k", str(self.dir), "-c", "fsync=off",
                "-c", "full_page_writes=off", "-c", "max_connections=200"]

    def stop_signal(self) -> int:
        return signal.SIGINT          # "fast" shutdown: disconnect clients, stop

    def answers(self, sock: socket.socket) -> bool:
        # An SSLRequest: a running server answers one byte, 'N' (no TLS here).
        sock.sendall(b"\x00\x00\x00\x08\x04\xd2\x16\x2f")
        return sock.recv(1) == b"N"
