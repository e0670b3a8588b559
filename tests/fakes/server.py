"""Run a WSGI app (the fakes are small Flask apps) on a free loopback port, optionally HTTPS.

The server is up when `serve()` returns: the socket is bound and listening before the
thread starts, so tests never sleep waiting for readiness.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from werkzeug.serving import make_server


@dataclass(frozen=True)
class RunningServer:
    base_url: str
    port: int
    ca_file: str | None  # the throwaway certificate to trust, for HTTPS servers


def make_self_signed_cert(directory: Path) -> tuple[Path, Path]:
    """A throwaway certificate for 127.0.0.1/localhost, valid for a day."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path = directory / "cert.pem"
    key_path = directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@contextmanager
def serve(app: Any, *, https: bool = False, host: str = "127.0.0.1") -> Iterator[RunningServer]:
    """Serve `app` on a free port for the duration of the `with` block."""
    with tempfile.TemporaryDirectory(prefix="leadrelay-fake-") as tmp:
        ssl_context = None
        ca_file = None
        if https:
            cert_path, key_path = make_self_signed_cert(Path(tmp))
            ssl_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ssl_context.load_cert_chain(cert_path, key_path)
            ca_file = str(cert_path)
        server = make_server(host, 0, app, threaded=True, ssl_context=ssl_context)
        port = server.server_port
        thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="fake-server",
            daemon=True,
        )
        thread.start()
        scheme = "https" if https else "http"
        try:
            yield RunningServer(base_url=f"{scheme}://{host}:{port}", port=port, ca_file=ca_file)
        finally:
            server.shutdown()
            server.server_close()
            thread.join(timeout=10)
