"""Dataclass <-> protobuf conversion for the generated client types (service.client.generated).

Absent means None: an unset proto3 ``optional`` scalar or message field becomes None, and
None is left unset on the way out, so "not given" (``immediately`` -> the API's default)
stays distinct from zero.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

from service.client.generated import MESSAGES, Message, proto_class

__all__ = ["from_proto", "to_proto"]

_M = TypeVar("_M", bound=Message)


def _fill(target: Any, value: Message) -> None:
    target.SetInParent()
    for f in dataclasses.fields(value):
        item = getattr(value, f.name)
        if item is None:
            continue
        if isinstance(item, tuple):
            repeated = getattr(target, f.name)
            for element in item:
                if isinstance(element, Message):
                    _fill(repeated.add(), element)
                else:
                    repeated.append(element)
        elif isinstance(item, Message):
            _fill(getattr(target, f.name), item)
        else:
            setattr(target, f.name, item)


def to_proto(value: Message) -> Any:
    """The protobuf message for a generated dataclass."""
    message = proto_class(type(value))()
    _fill(message, value)
    return message


def from_proto(message: Any, message_type: type[_M]) -> _M:
    """The generated dataclass for a protobuf message."""
    values: dict[str, Any] = {}
    for fd in message.DESCRIPTOR.fields:
        item = getattr(message, fd.name)
        if fd.message_type is not None:
            inner = MESSAGES[fd.message_type.name]
            if fd.is_repeated:
                values[fd.name] = tuple(from_proto(x, inner) for x in item)
            else:
                values[fd.name] = from_proto(item, inner) if message.HasField(fd.name) else None
        elif fd.is_repeated:
            values[fd.name] = tuple(item)
        elif fd.has_presence and not message.HasField(fd.name):
            values[fd.name] = None
        else:
            values[fd.name] = item
    return message_type(**values)
