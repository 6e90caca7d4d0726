"""How a client of the server (the probe, the ``trioscope`` command, the
server's own local probe) trusts an ``https://`` server: the system's
certificate authorities, or the bundle named by ``--ca-file`` (a private CA,
or the server's own self-signed certificate). The one function here that
reads a file; it is shared so that both sides mean the same by ``--ca-file``."""

from __future__ import annotations

import ssl


def client_tls(ca_file: str | None) -> ssl.SSLContext:
    """A TLS client context that verifies the server's certificate and name.

    Args:
        ca_file: PEM certificates to trust instead of the system's; any
            certificate in it is an anchor, a root or not (OpenSSL's partial
            chain), so the server's own certificate may be given.

    Raises:
        OSError, ssl.SSLError: the file cannot be read or holds no certificate.
    """
    if ca_file is None:
        return ssl.create_default_context()
    context = ssl.create_default_context(cafile=ca_file)
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    return context
