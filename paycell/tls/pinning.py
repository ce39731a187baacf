"""Public-key pinning: a connector may accept only the provider keys it was told (HPKP's pin-sha256).

A pin is the base64 SHA-256 of the certificate's DER SubjectPublicKeyInfo, what
`openssl x509 -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64`
prints. It pins the key, not the certificate, so a renewed certificate on the same key still
passes; list a backup key's pin beside the live one before rotating.

The check runs inside the TLS handshake (an `ssl.SSLObject` whose `do_handshake` looks at the
peer's certificate once OpenSSL has verified the chain and the host name), so a mismatch closes
the connection before aiohttp writes a byte of the request: no credential, no idempotency key and
no amount reaches a host that is not the pinned provider. Python 3.11 shows only the peer's own
(leaf) certificate, so the leaf's key is what is pinned.

A mismatch raises PinMismatch, an `ssl.SSLCertVerificationError` (aiohttp then raises
ClientConnectorCertificateError, a connection error): every connector turns it into
PspTransientError, which counts against the connector's circuit breaker like a refused connection
would. Nothing was sent, but the pipeline treats the outcome as unknown as for any connection
error, so the order waits and asks `status` again rather than failing; while the mismatch lasts
the breaker opens and new payments go to the next connector in the route.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import ssl

import structlog
from cryptography import x509
from cryptography.hazmat.primitives import serialization

log = structlog.get_logger("paycell.tls")

PIN_BYTES = 32  # SHA-256


class PinMismatch(ssl.SSLCertVerificationError):
    """The provider's certificate verified, but its public key is none of the connector's pins."""

    def __init__(self, connector: str, host: str | None, expected: tuple[str, ...], got: str) -> None:
        super().__init__(f"{connector}: the public key of {host or 'the peer'} is pinned to one of "
                         f"{', '.join(expected)}; it presented {got}")
        self.connector, self.host, self.expected, self.got = connector, host, expected, got
        self.verify_message = "public key not pinned"


def spki_sha256(der_certificate: bytes) -> str:
    """The pin (base64 SHA-256 of the SubjectPublicKeyInfo) of a DER certificate's key."""
    key = x509.load_der_x509_certificate(der_certificate).public_key()
    spki = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(spki).digest()).decode("ascii")


def parse_pins(text: str) -> tuple[str, ...]:
    """"PIN|PIN" -> the pins; ValueError unless each is base64 of 32 bytes."""
    pins = tuple(p.strip() for p in text.split("|") if p.strip())
    if not pins:
        raise ValueError("no pin given")
    for pin in pins:
        try:
            if len(base64.b64decode(pin, validate=True)) != PIN_BYTES:
                raise ValueError
        except (binascii.Error, ValueError):
            raise ValueError(f"{pin!r} is not a base64 SHA-256 (44 characters ending in '=')") from None
    return pins


def pinned_object_class(connector: str, pins: tuple[str, ...]) -> type[ssl.SSLObject]:
    """An SSLObject class (for `SSLContext.sslobject_class`) whose handshake ends with the pin check."""
    accepted = frozenset(pins)

    class PinnedSSLObject(ssl.SSLObject):
        def do_handshake(self) -> None:
            super().do_handshake()  # SSLWantReadError until done; raises on a failed verification
            got = spki_sha256(self.getpeercert(binary_form=True))
            if got not in accepted:
                log.error("tls.pin_mismatch", connector=connector, host=self.server_hostname,
                          expected=sorted(accepted), got=got)
                raise PinMismatch(connector, self.server_hostname, tuple(sorted(accepted)), got)

    PinnedSSLObject.__name__ = PinnedSSLObject.__qualname__ = f"PinnedSSLObject[{connector}]"
    return PinnedSSLObject
