"""Transport security: the web's server context, the client context of every outbound hop, and
public-key pinning (issue 13). Each hop and what is encrypted and verified on it: README, Security.

- server.py   the TLS context `paycell web` serves HTTPS with (TLS >= 1.2, ECDHE + AEAD)
- client.py   the context of every outbound https hop: the system's CAs plus PAYCELL_TLS_CA_FILE,
              hostname checked, TLS >= 1.2, a connector's pins; the same for rediss://
- pinning.py  a connector's pins checked in the handshake, before any request byte is sent
- hops.py     which store URLs verify their server (production refuses those that do not)
"""
