"""The simulator's webhook signing, as PayPal does it: an RSA key and a self-signed certificate
made at start (served at `/v1/notifications/certs/{cert id}`), and the PAYPAL-* headers over
`transmission_id|transmission_time|webhook_id|crc32(body)`."""
from __future__ import annotations

import base64
import datetime
import secrets
import zlib

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

CERT_VALID_DAYS = 30
KEY_BITS = 2048


class Signer:
    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
        self.cert_id = f"CERT-sim-{secrets.token_hex(8)}"
        now = datetime.datetime.now(datetime.timezone.utc)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "messageverificationcerts.paypal.sim"),
                          x509.NameAttribute(NameOID.ORGANIZATION_NAME, "paycell PayPal simulator")])
        self.cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                     .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                     .not_valid_before(now - datetime.timedelta(days=1))
                     .not_valid_after(now + datetime.timedelta(days=CERT_VALID_DAYS))
                     .sign(self.key, hashes.SHA256()))
        self.pem = self.cert.public_bytes(serialization.Encoding.PEM)

    def headers(self, body: bytes, webhook_id: str, cert_url: str, *, sent_at: datetime.datetime) -> dict[str, str]:
        transmission_id = secrets.token_hex(16)
        transmission_time = sent_at.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        message = f"{transmission_id}|{transmission_time}|{webhook_id}|{zlib.crc32(body)}".encode()
        signature = self.key.sign(message, padding.PKCS1v15(), hashes.SHA256())
        return {
            "Content-Type": "application/json",
            "PAYPAL-TRANSMISSION-ID": transmission_id,
            "PAYPAL-TRANSMISSION-TIME": transmission_time,
            "PAYPAL-TRANSMISSION-SIG": base64.b64encode(signature).decode(),
            "PAYPAL-CERT-URL": cert_url,
            "PAYPAL-AUTH-ALGO": "SHA256withRSA",
        }
