"""Channel credentials for a gateway that serves TLS, with a client certificate for mTLS."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc


def _read(path: Path | str, what: str) -> bytes:
    try:
        return Path(path).expanduser().read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read the {what} {path}: {exc.strerror or exc}") from None


def channel_credentials(ca_file: Path | str | None = None, client_cert: Path | str | None = None,
                        client_key: Path | str | None = None) -> Any:
    """``grpc.ChannelCredentials`` trusting ``ca_file`` (None: the system's roots) and, for
    mTLS, presenting ``client_cert`` with its ``client_key`` (both PEM files)."""
    if (client_cert is None) != (client_key is None):
        raise ValueError("client_cert and client_key go together: give both or neither")
    roots = _read(ca_file, "CA bundle") if ca_file is not None else None
    cert = _read(client_cert, "client certificate") if client_cert is not None else None
    key = _read(client_key, "client key") if client_key is not None else None
    return grpc.ssl_channel_credentials(root_certificates=roots, private_key=key, certificate_chain=cert)
