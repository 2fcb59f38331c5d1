"""JSON requests and responses with proto field names: friendly parse errors, zero values shown.

Shared by ``hsmca call`` and the ``--json`` / ``--from-json`` options of ``hsmca pca|kms``.
"""

from __future__ import annotations

import difflib
import json
from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor

__all__ = ["JsonRequestError", "message_to_dict", "message_to_json", "parse_request"]


class JsonRequestError(ValueError):
    """A JSON request that is not valid JSON or does not fit the request message."""


def _field_list(descriptor: Descriptor) -> str:
    return ", ".join(f.name for f in descriptor.fields)


def _check_names(value: Any, descriptor: Descriptor, where: str) -> None:
    """Refuse unknown keys, naming the valid snake_case fields (and the likely one)."""
    if not isinstance(value, dict):
        raise JsonRequestError(f"{where or 'the request'} must be a JSON object, "
                               f"not {type(value).__name__}")
    by_name = {f.name: f for f in descriptor.fields}
    by_json_name = {f.json_name: f for f in descriptor.fields}
    for key, item in value.items():
        fd = by_name.get(key) or by_json_name.get(key)
        path = f"{where}.{key}" if where else key
        if fd is None:
            close = difflib.get_close_matches(key, list(by_name), n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise JsonRequestError(
                f"unknown field {path!r} in {descriptor.name}{hint} "
                f"(fields: {_field_list(descriptor)})")
        if fd.message_type is not None and item is not None:
            items = item if fd.is_repeated and isinstance(item, list) else [item]
            for index, element in enumerate(items):
                inner = f"{path}[{index}]" if fd.is_repeated else path
                _check_names(element, fd.message_type, inner)


def parse_request(text: str, message: Any) -> Any:
    """Merge the JSON ``text`` into the protobuf ``message``; returns it."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise JsonRequestError(
            f"the request is not valid JSON: {e.msg} at line {e.lineno} column {e.colno}"
        ) from None
    _check_names(value, message.DESCRIPTOR, "")
    try:
        json_format.ParseDict(value, message)
    except json_format.ParseError as e:
        raise JsonRequestError(f"the request does not fit {message.DESCRIPTOR.name}: {e}"
                               ) from None
    return message


def message_to_dict(message: Any) -> dict[str, Any]:
    """The message as a JSON-ready dict: proto field names, zero values included."""
    result: dict[str, Any] = json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)
    return result


def message_to_json(message: Any) -> str:
    """The message as indented JSON: proto field names, zero values included."""
    return json.dumps(message_to_dict(message), indent=2, ensure_ascii=False)
