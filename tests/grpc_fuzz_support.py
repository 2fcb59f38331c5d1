"""Generated gRPC requests for the fuzz tests: any field of any request message, any value.

A request is drawn from its message descriptor: every field may be absent or set, strings
come from a hostile text strategy or, by field name, from plausible values (an existing CA,
a valid CSR, a validity), so that calls get past the first check as well as fail at it.
The checks are the service's promise: every outcome is OK, or a status other than INTERNAL
and UNKNOWN with an ErrorInfo reason; a refused call changes nothing; every certificate
issued passes pkilint with no ERROR or FATAL finding.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from hypothesis import strategies as st
from pki_checkers import errors, pkilint_rfc5280

from service.rpc.client import error_info

# Controls, bidi overrides, separators of the grammars, IDNA prefixes, long runs.
SPECIAL = st.sampled_from(["\x00", "\u202e", "\u200f", "\ufeff", "\U0001f600", "*", ".",
                           ",", "+", "=", "\\", "#", '"', ":", "/", "%", "@", "xn--", "-",
                           " ", "\n", "9" * 60, "*.com", "javascript:x", "CN=", "0x"])
TEXT = st.one_of(
    st.text(max_size=40),
    st.lists(st.one_of(SPECIAL, st.text(max_size=4)), max_size=20).map("".join),
    st.builds(lambda c, n: c * n, st.sampled_from(["a", "9", "\u00e9", "."]),
              st.sampled_from([65, 129, 257, 5000, 70_000])),
)
_INT_RANGES = {
    FieldDescriptor.TYPE_INT32: (-2**31, 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-2**31, 2**31 - 1),
    FieldDescriptor.TYPE_ENUM: (-2**31, 2**31 - 1),
    FieldDescriptor.TYPE_INT64: (-2**63, 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-2**63, 2**63 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
}


def _scalar(field: FieldDescriptor, hints: Mapping[str, st.SearchStrategy[Any]]
            ) -> st.SearchStrategy[Any]:
    if field.type == FieldDescriptor.TYPE_STRING:
        hint = hints.get(field.name)
        return st.one_of(hint, hint, TEXT) if hint is not None else TEXT
    if field.type == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if field.type == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=64)
    low, high = _INT_RANGES[field.type]
    return st.one_of(st.integers(0, 3), st.integers(0, 3), st.integers(low, high))


def message_values(descriptor: Descriptor, hints: Mapping[str, st.SearchStrategy[Any]],
                   depth: int = 0) -> st.SearchStrategy[dict[str, Any]]:
    """A dict field name -> value (nested dicts for messages) for ``descriptor``."""
    optional: dict[str, st.SearchStrategy[Any]] = {}
    for field in descriptor.fields:
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            if depth >= 2 or field.message_type.GetOptions().map_entry:
                continue
            one = message_values(field.message_type, hints, depth + 1)
        else:
            one = _scalar(field, hints)
        optional[field.name] = (st.lists(one, max_size=3)
                                if field.is_repeated else one)
    return st.fixed_dictionaries({}, optional=optional)


def build(descriptor: Descriptor, values: Mapping[str, Any]) -> Any:
    """The message of ``descriptor`` holding ``values``."""
    message = message_factory.GetMessageClass(descriptor)()
    for name, value in values.items():
        field = descriptor.fields_by_name[name]
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            if field.is_repeated:
                for item in value:
                    getattr(message, name).add().CopyFrom(build(field.message_type, item))
            else:
                getattr(message, name).CopyFrom(build(field.message_type, value))
        elif field.is_repeated:
            getattr(message, name).extend(value)
        else:
            setattr(message, name, value)
    return message


def call(channel: grpc.Channel, method: MethodDescriptor, request: Any) -> Any:
    """Call ``method`` with ``request``; return the response, or raise grpc.RpcError."""
    response_class = message_factory.GetMessageClass(method.output_type)
    stub = channel.unary_unary(
        f"/{method.containing_service.full_name}/{method.name}",
        request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=response_class.FromString)
    return stub(request, timeout=120)


def call_raw(channel: grpc.Channel, method: MethodDescriptor, payload: bytes) -> bytes:
    """Send ``payload`` as the request's bytes, whatever they are."""
    stub = channel.unary_unary(f"/{method.containing_service.full_name}/{method.name}",
                               request_serializer=lambda b: b,
                               response_deserializer=lambda b: b)
    return bytes(stub(payload, timeout=120))


def assert_clean_refusal(err: grpc.RpcError) -> None:
    """A refusal: not INTERNAL or UNKNOWN, with an ErrorInfo reason."""
    code, reason = error_info(err)
    assert code not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN), err.details()
    assert reason, (code, err.details())


def issued_certificates(response: Any) -> list[bytes]:
    """DER of every PEM certificate in the response's top-level string fields."""
    found: list[bytes] = []
    for field, value in response.ListFields():
        if field.type == FieldDescriptor.TYPE_STRING and isinstance(value, str) \
                and "BEGIN CERTIFICATE-----" in value and "chain" not in field.name:
            cert = x509.load_pem_x509_certificate(value.encode())
            found.append(cert.public_bytes(serialization.Encoding.DER))
    return found


def check_call(channel: grpc.Channel, method: MethodDescriptor, request: Any,
               snapshot: Callable[[], Any]) -> None:
    """Run one fuzz call and check the service's promise about its outcome."""
    before = snapshot()
    try:
        response = call(channel, method, request)
    except grpc.RpcError as err:
        assert_clean_refusal(err)
        assert snapshot() == before, f"{method.name} refused but changed state"
        return
    for der in issued_certificates(response):
        assert errors(pkilint_rfc5280(der)) == [], method.name
