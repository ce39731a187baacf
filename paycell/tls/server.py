"""The TLS context `paycell web` serves HTTPS with (PAYCELL_TLS_CERT_FILE, PAYCELL_TLS_KEY_FILE).

TLS 1.2 and 1.3 only. For 1.2 only ECDHE key exchange (forward secrecy) with AEAD ciphers
(AES-GCM, ChaCha20-Poly1305), as Mozilla's "intermediate" profile; TLS 1.3's suites are all AEAD
and are OpenSSL's defaults. No compression (CRIME), no renegotiation, the server's cipher order.
"""
from __future__ import annotations

import ssl

from paycell.config import Settings, SettingsError

MINIMUM_VERSION = ssl.TLSVersion.TLSv1_2
TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"


def context(cert_file: str, key_file: str) -> ssl.SSLContext:
    """The server context for this certificate chain (PEM, leaf first) and its private key."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = MINIMUM_VERSION
    ctx.set_ciphers(TLS12_CIPHERS)
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE | ssl.OP_NO_RENEGOTIATION
    ctx.load_cert_chain(cert_file, key_file)
    return ctx


def from_settings(settings: Settings) -> ssl.SSLContext | None:
    """The web's context, or None to serve plain HTTP (no certificate configured). SettingsError
    when the files cannot be read or do not hold a matching certificate and key."""
    if not settings.tls_cert_file:
        return None
    try:
        return context(settings.tls_cert_file, settings.tls_key_file)
    except (OSError, ssl.SSLError) as exc:
        raise SettingsError(f"PAYCELL_TLS_CERT_FILE={settings.tls_cert_file!r} / PAYCELL_TLS_KEY_FILE="
                            f"{settings.tls_key_file!r} cannot serve HTTPS: {exc}") from None
