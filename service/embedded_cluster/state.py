"""The embedded cluster's state directory: what makes a restarted cluster the same cluster.

    lock            flock()ed while a cluster runs here (the kernel drops it when the process dies)
    admin-token     0600, the admin's bearer token
    ca.key, ca.crt  0600, the CA; a serving certificate is issued from it at every start
    endpoint.json   the host and port last served, tried first again (kubeconfigs keep working)
    objects/        the store's snapshot and journal (apiserver/journal.py)
    seeding         present while the demo seed is applied (a crash mid-seed finishes it next time)

Every file is written with temp file + fsync + rename, so a kill at any moment leaves a
loadable directory; anything unreadable is a StateError naming the file."""

from __future__ import annotations

import fcntl
import json
import os
import secrets
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm

from service.embedded_cluster.apiserver.journal import COMPACT_BYTES, Journal
from service.embedded_cluster.apiserver.recovery import load_state
from service.embedded_cluster.apiserver.statefiles import StateError, read_state_file, write_atomic
from service.embedded_cluster.apiserver.tls import CertificateAuthority, check_authority, new_authority

_MIN_TOKEN = 16


class StateDir:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.objects = path / "objects"
        self._lock_fd: int | None = None

    def open(self) -> None:
        """Create the directory if needed and take its lock."""
        try:
            self.path.mkdir(mode=0o700, parents=True, exist_ok=True)   # private: it holds the CA key
            self.objects.mkdir(mode=0o700, exist_ok=True)
            fd = os.open(self.path / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as err:
            raise StateError(self.path, f"cannot be used ({err.strerror or err})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise StateError(self.path, "is in use by another running embedded cluster") from None
        self._lock_fd = fd

    def close(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)   # releases the lock
            self._lock_fd = None

    def journal(self, *, compact_bytes: int = COMPACT_BYTES) -> Journal:
        """The store's journal, opened on the state loaded from ``objects/``."""
        return Journal(self.objects, load_state(self.objects), compact_bytes=compact_bytes)

    def admin_token(self) -> str:
        path = self.path / "admin-token"
        raw = read_state_file(path)
        if raw is None:
            token = secrets.token_urlsafe(32)
            write_atomic(path, f"{token}\n".encode())
            return token
        token = raw.decode("utf-8", errors="replace").strip()
        if len(token) < _MIN_TOKEN or not token.isprintable() or " " in token:
            raise StateError(path, f"not an admin token (one line of at least {_MIN_TOKEN} printable characters)")
        return token

    def authority(self) -> CertificateAuthority:
        cert_path, key_path = self.path / "ca.crt", self.path / "ca.key"
        cert, key = read_state_file(cert_path), read_state_file(key_path)
        if cert is not None and key is None:
            raise StateError(key_path, f"is missing (the CA certificate {cert_path.name} is there)")
        if cert is None:
            # No certificate: none was ever handed out (a kill may have left the key alone).
            ca = new_authority()
            write_atomic(key_path, ca.key_pem)    # the key first: a certificate never lacks its key
            write_atomic(cert_path, ca.cert_pem)
            return ca
        assert key is not None
        ca = CertificateAuthority(cert, key)
        try:
            check_authority(ca)
        except (ValueError, TypeError, UnsupportedAlgorithm) as err:
            raise StateError(cert_path, f"not a usable CA with {key_path.name}: {err}") from None
        return ca

    def last_port(self, host: str) -> int | None:
        path = self.path / "endpoint.json"
        raw = read_state_file(path)
        if raw is None:
            return None
        try:
            endpoint = json.loads(raw)
            port = endpoint["port"] if endpoint["host"] == host else None
        except (ValueError, KeyError, TypeError):
            raise StateError(path, "not an endpoint record ({\"host\": ..., \"port\": ...})") from None
        if port is not None and not (isinstance(port, int) and 0 < port < 65536):
            raise StateError(path, f"invalid port {port!r}")
        return port

    def remember_endpoint(self, host: str, port: int) -> None:
        write_atomic(self.path / "endpoint.json", json.dumps({"host": host, "port": port}).encode())

    @property
    def seeding(self) -> bool:
        return (self.path / "seeding").exists()

    def mark_seeding(self, active: bool) -> None:
        marker = self.path / "seeding"
        if active:
            write_atomic(marker, b"")
        else:
            marker.unlink(missing_ok=True)
