"""`hsmca call`: a generic JSON client for the hsmca.v1 services (grpcurl-like)."""

from __future__ import annotations

import sys

import grpc

from service.client.jsonio import JsonRequestError, message_to_json, parse_request
from service.config import Config
from service.gen.hsmca.v1 import kms_pb2, kms_pb2_grpc, private_ca_pb2, private_ca_pb2_grpc
from service.rpc.channel import client_channel
from service.rpc.client import error_info

_SERVICES = {
    "PrivateCa": (private_ca_pb2, private_ca_pb2_grpc.PrivateCaStub),
    "KmsCertificates": (kms_pb2, kms_pb2_grpc.KmsCertificatesStub),
}


def call(target: str | None, method: str, data: str, *, config: Config | None = None,
         field: str | None = None) -> int:
    """Call ``Service/Method`` with a JSON request; print the JSON response or the error.

    The channel is service/rpc/channel.py's: mTLS with var/tls/admin.{pem,key} unless the
    server is configured plaintext; the target is ``target``, $HSMCA_TARGET or grpc.listen.
    ``field`` prints only that top-level field of the response (for shell scripts).
    """
    service, _, name = method.partition("/")
    if service.startswith("hsmca.v1."):
        service = service.removeprefix("hsmca.v1.")
    if service not in _SERVICES or not name:
        print(f"unknown method {method!r}; use PrivateCa/<Rpc> or KmsCertificates/<Rpc>",
              file=sys.stderr)
        return 2
    module, stub_cls = _SERVICES[service]
    request_cls = getattr(module, f"{name}Request", None)
    if request_cls is None:
        print(f"{service} has no RPC {name!r}", file=sys.stderr)
        return 2
    try:
        request = parse_request(data, request_cls())
    except JsonRequestError as e:
        print(f"hsmca call: {e}", file=sys.stderr)
        return 2
    with client_channel(target, config=config) as channel:
        stub = stub_cls(channel)
        try:
            response = getattr(stub, name)(request, timeout=60)
        except grpc.RpcError as e:
            code, reason = error_info(e)
            print(f"{code.name} {reason}: {e.details()}", file=sys.stderr)
            return 1
    if field is not None:
        if field not in response.DESCRIPTOR.fields_by_name:
            print(f"{type(response).__name__} has no field {field!r}", file=sys.stderr)
            return 2
        print(getattr(response, field))
        return 0
    print(message_to_json(response))
    return 0
