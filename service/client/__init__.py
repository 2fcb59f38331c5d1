"""The typed hsmca client (blocking and asyncio), its errors and retry policy.

    from service.client import HsmcaClient, Refused

    with HsmcaClient.connect() as client:            # mTLS from var/tls, $HSMCA_TARGET
        ca = client.pca.describe_ca_certificate(identifier="...")
        print(ca.certificate.x509_certificate)

docs/client.md has a complete example (a certificate at start-up, renewed in the background).
"""

from service.client.client import (
    AsyncHsmcaClient,
    ChannelFactory,
    HsmcaClient,
    default_async_channel,
    default_channel,
)
from service.client.errors import CallError, Refused, TransportError
from service.client.retry import NO_RETRY, RetryPolicy

__all__ = [
    "NO_RETRY",
    "AsyncHsmcaClient",
    "CallError",
    "ChannelFactory",
    "HsmcaClient",
    "Refused",
    "RetryPolicy",
    "TransportError",
    "default_async_channel",
    "default_channel",
]
