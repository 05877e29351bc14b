"""Trust the county broker by the CA fingerprint in the claim: enrolment over TLS, from nothing.

A new Pi holds no CA certificate, only the claim's `ca`: the base64 SHA-256 of the county CA's
certificate (DER), small enough for the QR code. Before any credential is sent:

1. a TLS handshake with no verification and no MQTT (nothing secret goes over it) fetches the
   chain the broker presents; the certificate whose fingerprint matches becomes the only trust
   anchor, so the county's broker must present its CA in its chain (Mosquitto: `certfile` holds
   the server certificate followed by the CA's);
2. the real connection is then verified as any TLS client does, chain and host name, against
   that anchor alone. A broker that merely shows the county's (public) CA certificate next to a
   certificate of its own is refused here.

The anchor is kept (`county-ca.pem`) for the station's own `[broker]` connection afterwards.
"""

from __future__ import annotations

import base64
import hashlib
import socket
import ssl
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization


class PinError(RuntimeError):
    """The broker did not prove it is the county's; the message says what it presented."""


def fingerprint(der: bytes) -> str:
    """What a claim carries: base64 of the SHA-256 of a certificate's DER bytes (44 characters)."""
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


def pem_fingerprint(pem: bytes) -> str:
    """The fingerprint of the first certificate in a PEM file (the registrar's `--station-ca`)."""
    cert = x509.load_pem_x509_certificate(pem)
    return fingerprint(cert.public_bytes(serialization.Encoding.DER))


def _chain(sock: ssl.SSLSocket) -> list[bytes]:
    """The certificates the peer presented, unverified. Public from Python 3.13; before, the
    same method lives on the C object (Debian 12's Python 3.11 has it there)."""
    get: Any = getattr(sock, "get_unverified_chain", None) or sock._sslobj.get_unverified_chain  # type: ignore[union-attr]
    out = []
    for cert in get() or []:
        out.append(cert if isinstance(cert, bytes) else cert.public_bytes(ssl._ssl.ENCODING_DER))  # type: ignore[attr-defined]
    return out


def presented_chain(host: str, port: int, timeout: float) -> list[bytes]:
    """The DER certificates the broker at host:port presents in its TLS handshake."""
    probe = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    probe.check_hostname = False
    probe.verify_mode = ssl.CERT_NONE  # only to read the chain; nothing is sent over this
    try:
        with (
            socket.create_connection((host, port), timeout=timeout) as raw,
            probe.wrap_socket(raw, server_hostname=host) as tls,
        ):
            return _chain(tls)
    except (ssl.SSLError, ConnectionResetError) as exc:  # a plain MQTT listener resets a ClientHello
        raise PinError(f"{host}:{port} does not speak TLS there ({exc}): the claim names the TLS listener") from None


def pinned_context(host: str, port: int, want: str, timeout: float) -> tuple[ssl.SSLContext, bytes]:
    """A verifying TLS context whose only trust anchor is the presented certificate with the
    fingerprint `want`, and that certificate (PEM); PinError if the broker shows no such one."""
    chain = presented_chain(host, port, timeout)
    anchor = next((der for der in chain if fingerprint(der) == want), None)
    if anchor is None:
        shown = ", ".join(fingerprint(der) for der in chain) or "none"
        raise PinError(
            f"the broker at {host}:{port} did not present the county CA of the claim (fingerprint {want}; "
            f"it presented {shown}): a wrong address, a man in the middle, or a broker whose certfile "
            "lacks the CA certificate. Nothing was sent to it."
        )
    pem = ssl.DER_cert_to_PEM_cert(anchor).encode()
    context = ssl.create_default_context(cadata=pem.decode())  # verifies chain and host name
    return context, pem
