"""`hsmca pca ...` and `hsmca kms ...`: one command per RPC, plus the shortcuts and `inspect`.

The commands and their flags are made from the request messages' descriptors, so every field
of every RPC has a flag (``--parent-identifier``, ``--api-passthrough.subject.common-name``),
and the help text is the field's .proto comment. PEM inputs (``--csr``, ``--certificate``,
``--certificate-chain``) and binary inputs (``--message``, ``--plaintext``, ...) are files, or
``-`` for stdin; PEM and binary outputs go to ``--out`` / ``--chain-out`` / ``--key-out`` or are
printed. ``--json`` prints the response as JSON with proto field names and zero values.

Exit codes: 0 success; 1 the service refused the call (its ErrorInfo reason and message are
printed); 2 a usage error (bad flag, unreadable file, bad JSON, missing client credentials);
3 no answer from the service (not reachable, TLS refused, deadline); 4 a local check failed
(a CRL that does not verify, a certificate that does not match its key).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor

from service.client.client import HsmcaClient
from service.client.convert import from_proto, to_proto
from service.client.errors import CallError, Refused
from service.client.generated import (
    FIELD_DOCS,
    RPC_DOCS,
    RPC_SUMMARIES,
    RPCS,
    Message,
    proto_class,
)
from service.client.jsonio import JsonRequestError, message_to_dict, message_to_json, parse_request
from service.client.retry import RetryPolicy
from service.config import ConfigError

__all__ = [
    "EXIT_CHECK_FAILED",
    "EXIT_OK",
    "EXIT_REFUSED",
    "EXIT_TRANSPORT",
    "EXIT_USAGE",
    "CheckFailed",
    "UsageError",
    "add_rpc_commands",
]

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_TRANSPORT = 3
EXIT_CHECK_FAILED = 4

GROUPS = {"pca": "PrivateCa", "kms": "KmsCertificates"}
_GROUP_HELP = {
    "pca": "Private CA: CA hierarchy, certificate issuance, revocation, CRLs",
    "kms": "KMS certificates: keys held in the token, their CSRs, certificates and key use",
}
#: Request string fields that carry PEM text: the flag takes a file (or - for stdin).
PEM_INPUTS = frozenset({"csr", "certificate", "certificate_chain"})
#: Response fields written by --out (the first present), --chain-out and --key-out.
MAIN_OUTPUTS = ("x509_certificate", "certificate", "csr", "encrypted_private_key",
                "signature_value", "ciphertext_blob", "plaintext", "pkcs12_blob")
CHAIN_OUTPUT = "certificate_chain"
KEY_OUTPUT = "private_key"
#: Outputs that are secret: written mode 0600.
SECRET_OUTPUTS = frozenset({"encrypted_private_key", "private_key", "plaintext", "pkcs12_blob"})

_FIELD_PREFIX = "field:"


class UsageError(Exception):
    """A mistake in the command line or its inputs (exit 2)."""


class CheckFailed(Exception):
    """A local check of what the service returned failed (exit 4)."""


def kebab(name: str) -> str:
    """create_root_ca_certificate / CreateRootCACertificate -> create-root-ca-certificate."""
    s = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    s = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", s)
    return s.lower().replace("_", "-")


# --- reading inputs, writing outputs --------------------------------------------------------


def read_input(path: str, *, binary: bool = False) -> Any:
    """The content of file ``path``, or of stdin for ``-``."""
    try:
        if path == "-":
            return sys.stdin.buffer.read() if binary else sys.stdin.read()
        return Path(path).read_bytes() if binary else Path(path).read_text()
    except OSError as e:
        raise UsageError(f"cannot read {path!r}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise UsageError(f"{path!r} is not text (PEM expected)") from None


def write_output(path: str, data: str | bytes, *, secret: bool) -> None:
    """Write ``data`` to ``path`` atomically (mode 0600 if secret, else 0644); - is stdout."""
    raw = data.encode() if isinstance(data, str) else data
    if path == "-":
        sys.stdout.buffer.write(raw)
        sys.stdout.flush()
        return
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    mode = 0o600 if secret else 0o644
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        try:
            os.write(fd, raw)
            os.fchmod(fd, mode)  # whatever the umask
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise UsageError(f"cannot write {path!r}: {e.strerror}") from None


# --- flags from the request descriptors -----------------------------------------------------


def _pair_fields(descriptor: Descriptor) -> tuple[str, str] | None:
    """(a, b) for a message of exactly two string fields (Tag, CustomAttribute, ...)."""
    fields = descriptor.fields
    if len(fields) == 2 and all(f.type == FieldDescriptor.TYPE_STRING for f in fields):
        return fields[0].name, fields[1].name
    return None


def _help(descriptor: Descriptor, fd: FieldDescriptor, extra: str) -> str:
    text = FIELD_DOCS.get(f"{descriptor.name}.{fd.name}", "")
    return f"{text} {extra}".strip().replace("%", "%%")


def _add_field_flags(parser: argparse.ArgumentParser, descriptor: Descriptor,
                     prefix: tuple[str, ...] = (), *, top: bool = True) -> None:
    """One flag per field of ``descriptor`` (nested messages flattened with dots)."""
    for fd in descriptor.fields:
        path = (*prefix, fd.name)
        flag = "--" + ".".join(kebab(p) for p in path)
        dest = _FIELD_PREFIX + ".".join(path)
        if fd.message_type is not None:
            pair = _pair_fields(fd.message_type)
            if fd.is_repeated and pair:
                metavar = f"{pair[0].upper()}={pair[1].upper()}"
                parser.add_argument(flag, dest=dest, action="append", metavar=metavar,
                                    help=_help(descriptor, fd, "Repeat for more."))
            elif not fd.is_repeated:
                _add_field_flags(parser, fd.message_type, path, top=False)
            continue
        kind = fd.type
        if fd.is_repeated:
            parser.add_argument(flag, dest=dest, action="append", metavar="VALUE",
                                help=_help(descriptor, fd, "Repeat for more."))
        elif kind == FieldDescriptor.TYPE_BOOL:
            if fd.has_presence:
                parser.add_argument(flag, dest=dest, action=argparse.BooleanOptionalAction,
                                    default=None, help=_help(descriptor, fd, ""))
            else:
                parser.add_argument(flag, dest=dest, action="store_const", const=True,
                                    default=None, help=_help(descriptor, fd, ""))
        elif kind == FieldDescriptor.TYPE_BYTES:
            parser.add_argument(flag, dest=dest, metavar="FILE",
                                help=_help(descriptor, fd, "Read from FILE (- for stdin)."))
        elif kind == FieldDescriptor.TYPE_STRING:
            if top and fd.name in PEM_INPUTS:
                parser.add_argument(flag, dest=dest, metavar="FILE",
                                    help=_help(descriptor, fd, "Read from FILE (- for stdin)."))
            else:
                parser.add_argument(flag, dest=dest, metavar=fd.name.upper(),
                                    help=_help(descriptor, fd, ""))
        else:
            parser.add_argument(flag, dest=dest, type=int, metavar="N",
                                help=_help(descriptor, fd, ""))


def _set_field(message: Any, path: list[str], value: Any) -> None:
    for name in path[:-1]:
        message = getattr(message, name)
    fd = message.DESCRIPTOR.fields_by_name[path[-1]]
    if fd.message_type is not None:  # repeated KEY=VALUE pairs
        pair = _pair_fields(fd.message_type)
        assert pair is not None
        for item in value:
            first, sep, second = item.partition("=")
            if not sep:
                raise UsageError(f"--{kebab(path[-1])}: {item!r} is not "
                                 f"{pair[0].upper()}={pair[1].upper()}")
            message_item = getattr(message, path[-1]).add()
            setattr(message_item, pair[0], first)
            setattr(message_item, pair[1], second)
        return
    if fd.is_repeated:
        getattr(message, path[-1]).extend(value)
    elif fd.type == FieldDescriptor.TYPE_BYTES:
        setattr(message, path[-1], read_input(value, binary=True))
    elif fd.type == FieldDescriptor.TYPE_STRING and len(path) == 1 and path[0] in PEM_INPUTS:
        setattr(message, path[-1], read_input(value))
    else:
        try:
            setattr(message, path[-1], value)
        except ValueError as e:  # an int out of the field's range
            raise UsageError(f"--{kebab(path[-1])}: {e}") from None


def build_request(args: argparse.Namespace, request_type: type[Message]) -> Message:
    """The request from --from-json (if given) and the field flags (which win)."""
    message = proto_class(request_type)()
    if args.from_json:
        try:
            parse_request(read_input(args.from_json), message)
        except JsonRequestError as e:
            raise UsageError(f"--from-json {args.from_json}: {e}") from None
    for dest, value in sorted(vars(args).items()):
        if dest.startswith(_FIELD_PREFIX) and value is not None:
            _set_field(message, dest.removeprefix(_FIELD_PREFIX).split("."), value)
    return from_proto(message, request_type)


# --- connection and output flags ------------------------------------------------------------


def add_connection_flags(parser: argparse.ArgumentParser) -> None:
    """--target, credentials and --timeout."""
    g = parser.add_argument_group("connection")
    g.add_argument("--target", help="HOST:PORT of the service (default: $HSMCA_TARGET, else "
                   "the configured grpc.listen)")
    g.add_argument("--tls-dir", type=Path, help="directory with ca.pem, admin.pem and "
                   "admin.key (default: the configured tls.dir, var/tls)")
    g.add_argument("--client-cert", type=Path, help="client certificate (PEM) instead of "
                   "admin.pem in --tls-dir (or $HSMCA_CLIENT_CERT)")
    g.add_argument("--client-key", type=Path, help="its private key (or $HSMCA_CLIENT_KEY)")
    g.add_argument("--ca", type=Path, help="trust anchors for the server (or $HSMCA_CA)")
    g.add_argument("--insecure", action="store_const", const=True, default=None,
                   help="plaintext, no TLS (only for a server configured grpc.insecure)")
    g.add_argument("--timeout", type=float, default=60.0, help="seconds per attempt "
                   "(default 60)")
    g.add_argument("--attempts", type=int, default=3, help="attempts in all when the "
                   "answer is UNAVAILABLE or RESOURCE_EXHAUSTED, with backoff (default 3)")


@contextmanager
def connect(args: argparse.Namespace) -> Iterator[HsmcaClient]:
    """The client for the connection flags (and the global --config)."""
    from service.config import load_config

    try:
        config = load_config(getattr(args, "config", None))
        if args.attempts < 1:
            raise UsageError("--attempts: at least 1")
        client = HsmcaClient.connect(args.target, timeout=args.timeout, tls_dir=args.tls_dir,
                                     retry=RetryPolicy(max_attempts=args.attempts),
                                     config=config, cert=args.client_cert, key=args.client_key,
                                     ca=args.ca,
                                     insecure=args.insecure)
    except ConfigError as e:
        raise UsageError(str(e)) from None
    with client:
        yield client


def _response_fields(response_type: type[Message]) -> tuple[list[str], bool, bool]:
    """(--out candidates in order, has a chain, has a key) of a response.

    Looks into a `certificate` message (DescribeCACertificate, DescribeClientCertificate).
    """
    descriptor = proto_class(response_type).DESCRIPTOR
    names = {f.name for f in descriptor.fields}
    inner = descriptor.fields_by_name.get("certificate")
    if inner is not None and inner.message_type is not None and not inner.is_repeated:
        names |= {f"certificate.{f.name}" for f in inner.message_type.fields}
        names.discard("certificate")
    mains = [n for n in (*MAIN_OUTPUTS, *(f"certificate.{o}" for o in MAIN_OUTPUTS))
             if n in names]
    chain = CHAIN_OUTPUT in names or f"certificate.{CHAIN_OUTPUT}" in names
    return mains, chain, KEY_OUTPUT in names


def add_output_flags(parser: argparse.ArgumentParser, response_type: type[Message]) -> None:
    """--json, and --out / --chain-out / --key-out where the response has such fields."""
    g = parser.add_argument_group("output")
    g.add_argument("--json", action="store_true", help="print the response as JSON (proto "
                   "field names, zero values included)")
    mains, chain, key = _response_fields(response_type)
    if mains:
        secret = any(m.split(".")[-1] in SECRET_OUTPUTS for m in mains)
        g.add_argument("--out", metavar="FILE", help=f"write {' or '.join(mains)} (the one "
                       "the response carries) to FILE (- for stdout)"
                       + (", secrets with mode 0600" if secret else ""))
    if chain:
        g.add_argument("--chain-out", metavar="FILE", help="write certificate_chain to FILE")
    if key:
        g.add_argument("--key-out", metavar="FILE",
                       help="write private_key to FILE with mode 0600")


def _lookup(values: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(values, dict):
            return None
        values = values.get(part)  # type: ignore[assignment]
    return values


def _render(value: Any, indent: str = "") -> Iterator[str]:
    """A YAML-like view of a JSON value: zero values shown, PEM kept as blocks."""
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, dict) and item:
                yield f"{indent}{key}:"
                yield from _render(item, indent + "  ")
            elif isinstance(item, list) and item:
                yield f"{indent}{key}:"
                for element in item:
                    lines = list(_render(element, indent + "  "))
                    if lines:
                        yield f"{indent}- {lines[0].lstrip()}"
                        yield from lines[1:]
            elif isinstance(item, str) and "\n" in item:
                yield f"{indent}{key}: |"
                yield from (f"{indent}  {line}" for line in item.rstrip("\n").split("\n"))
            else:
                yield f"{indent}{key}: {_scalar(item)}"
    else:
        yield f"{indent}{_scalar(value)}"


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value if value and value.strip() == value and ":" not in value else repr(value)
    if isinstance(value, dict | list):
        return "{}" if isinstance(value, dict) else "[]"
    return str(value)


def _field_value(message: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        message = getattr(message, part)
    return message


def emit(args: argparse.Namespace, response: Message) -> None:
    """Write the file outputs, then print the response (text, or JSON with --json)."""
    message = to_proto(response)
    values = message_to_dict(message)
    written: dict[str, str] = {}
    mains, _, _ = _response_fields(type(response))
    main = next((m for m in mains if _field_value(message, m)), mains[0] if mains else None)
    targets = [(getattr(args, "out", None), main),
               (getattr(args, "chain_out", None),
                CHAIN_OUTPUT if CHAIN_OUTPUT in values else f"certificate.{CHAIN_OUTPUT}"),
               (getattr(args, "key_out", None), KEY_OUTPUT)]
    for path, field in targets:
        if not path or not field:
            continue
        holder = _field_value(message, field)
        if not holder:
            print(f"hsmca: the response has no {field} to write to {path}", file=sys.stderr)
            continue
        write_output(path, holder, secret=field.split(".")[-1] in SECRET_OUTPUTS)
        written[field] = path
    if args.json:
        print(message_to_json(message))
        return
    for field, path in written.items():
        # Shown as where it went, not in full, when it went to a file.
        parent, _, leaf = field.rpartition(".")
        holder_values = _lookup(values, parent) if parent else values
        if isinstance(holder_values, dict) and path != "-":
            holder_values[leaf] = f"(written to {path})"
    print("\n".join(_render(values)))


# --- the per-RPC commands -------------------------------------------------------------------


def _rpc_command(service: str, method: str) -> Callable[[argparse.Namespace], int]:
    request_type, _ = RPCS[service][method]

    def run(args: argparse.Namespace) -> int:
        request = build_request(args, request_type)
        with connect(args) as client:
            response = client.call(service, method, request)
        emit(args, response)
        return EXIT_OK

    return run


def _description(service: str, method: str) -> str:
    return f"{method}: {RPC_DOCS.get(f'{service}/{method}', '')}".replace("%", "%%")


def add_rpc_commands(sub: Any) -> dict[str, Any]:
    """Add `pca` and `kms` with a command per RPC; returns each group's command parser."""
    groups: dict[str, Any] = {}
    for group, service in GROUPS.items():
        group_parser = sub.add_parser(group, help=_GROUP_HELP[group],
                                      description=_GROUP_HELP[group] + ". Exit codes: 0 ok, "
                                      "1 refused, 2 usage, 3 no answer, 4 check failed.")
        commands = group_parser.add_subparsers(dest="rpc", required=True, metavar="COMMAND")
        for method, (request_type, response_type) in RPCS[service].items():
            summary = RPC_SUMMARIES.get(f"{service}/{method}", "")
            p = commands.add_parser(
                kebab(method), allow_abbrev=False, help=summary.replace("%", "%%"),
                description=_description(service, method),
                formatter_class=argparse.RawDescriptionHelpFormatter)
            fields = p.add_argument_group("request fields (see docs/api.md)")
            fields.add_argument("--from-json", metavar="FILE", help="start from this JSON "
                                "request (proto field names; - for stdin); flags override it")
            _add_field_flags(fields, proto_class(request_type).DESCRIPTOR)
            add_output_flags(p, response_type)
            add_connection_flags(p)
            p.set_defaults(fn=guarded(_rpc_command(service, method)))
        groups[group] = commands
    return groups


def guarded(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """``fn`` with its failures mapped to exit codes, one line on stderr each, no traceback."""
    return lambda args: _run_command(fn, args)


def _run_command(fn: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    try:
        return fn(args)
    except UsageError as e:
        print(f"hsmca: {e}", file=sys.stderr)
        return EXIT_USAGE
    except CheckFailed as e:
        print(f"hsmca: check failed: {e}", file=sys.stderr)
        return EXIT_CHECK_FAILED
    except Refused as e:
        print(f"hsmca: refused: {e.code.name} {e.reason or '-'}: {e.message}"
              + (f" (request_id {e.request_id})" if e.request_id else ""), file=sys.stderr)
        return EXIT_REFUSED
    except CallError as e:
        print(f"hsmca: no answer from the service: {e.code.name}: {e.message}",
              file=sys.stderr)
        return EXIT_TRANSPORT
