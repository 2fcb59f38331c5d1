"""Generate the RPC reference and the typed client's API module from proto/ and its comments.

    python proto/generate_reference.py [--docs docs/api.md] [--client service/client/generated.py]

Both outputs are pure functions of the .proto files (read with their comments through protoc's
``--include_source_info``): `make proto` runs this after proto/generate.sh, and
tests/test_proto_drift.py regenerates into a temporary directory and compares byte for byte.

- docs/api.md: every service and operation, its request and response fields with types and
  the proto comments (which carry defaults, allowed values, validity and subject rules and the
  error reasons), and the CLI command that calls it.
- service/client/generated.py: one frozen dataclass per message, one method per RPC for the
  sync and the asyncio client (keyword arguments named after the request fields), and the
  comments as data for the CLI's --help.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from google.protobuf import descriptor_pb2

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "hsmca.v1"
#: CLI group per service (hsmca pca ..., hsmca kms ...).
CLI_GROUPS = {"PrivateCa": "pca", "KmsCertificates": "kms"}
#: Python module of the generated protobuf code per .proto file.
PB2_MODULES = {
    "hsmca/v1/common.proto": "common_pb2",
    "hsmca/v1/kms.proto": "kms_pb2",
    "hsmca/v1/private_ca.proto": "private_ca_pb2",
}

_F = descriptor_pb2.FieldDescriptorProto
_SCALARS = {
    _F.TYPE_STRING: ("string", "str"),
    _F.TYPE_BYTES: ("bytes", "bytes"),
    _F.TYPE_INT32: ("int32", "int"),
    _F.TYPE_INT64: ("int64", "int"),
    _F.TYPE_UINT32: ("uint32", "int"),
    _F.TYPE_UINT64: ("uint64", "int"),
    _F.TYPE_BOOL: ("bool", "bool"),
}


@dataclass
class Field:
    """One message field with its comment."""

    name: str
    number: int
    proto_type: str  # "string", "int32", ... or the message's short name
    python_type: str
    message: str | None  # short name of the message type, if any
    repeated: bool
    optional: bool  # proto3 `optional`: presence is tracked, unset differs from zero
    comment: str


@dataclass
class Message:
    """One message with its comment and fields."""

    name: str
    file: str
    comment: str
    fields: list[Field] = field(default_factory=list)


@dataclass
class Method:
    """One RPC."""

    name: str
    request: str
    response: str
    comment: str


@dataclass
class Service:
    """One service with its RPCs."""

    name: str
    file: str
    comment: str
    file_comment: str
    methods: list[Method] = field(default_factory=list)


def _comment(text: str) -> str:
    """A proto comment as plain text: lines stripped, paragraphs kept."""
    lines = [line.strip() for line in text.strip("\n").splitlines()]
    return "\n".join(lines).strip()


def _load(proto_dir: Path) -> tuple[list[Service], dict[str, Message], dict[str, str]]:
    """Services, messages (by short name) and file comments, read from the .proto files."""
    files = sorted(p.relative_to(proto_dir).as_posix() for p in proto_dir.rglob("*.proto"))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "set.pb"
        subprocess.run(  # noqa: S603 - this interpreter, fixed arguments
            [sys.executable, "-m", "grpc_tools.protoc", f"-I{proto_dir}",
             "--include_source_info", f"--descriptor_set_out={out}", *files],
            check=True,
        )
        descriptor_set = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    services: list[Service] = []
    messages: dict[str, Message] = {}
    file_comments: dict[str, str] = {}
    for f in descriptor_set.file:
        comments = {tuple(loc.path): loc.leading_comments
                    for loc in f.source_code_info.location}
        # The file's own comment is the one before `syntax` (path [12]).
        file_comments[f.name] = _comment(comments.get((12,), ""))
        for mi, m in enumerate(f.message_type):
            msg = Message(m.name, f.name, _comment(comments.get((4, mi), "")))
            for fi, fd in enumerate(m.field):
                repeated = fd.label == _F.LABEL_REPEATED
                if fd.type == _F.TYPE_MESSAGE:
                    short = fd.type_name.rsplit(".", 1)[-1]
                    proto_type, python_type, message = short, short, short
                elif fd.type in _SCALARS:
                    proto_type, python_type = _SCALARS[fd.type]
                    message = None
                else:
                    raise SystemExit(f"{m.name}.{fd.name}: unsupported field type {fd.type}")
                msg.fields.append(Field(
                    fd.name, fd.number, proto_type, python_type, message, repeated,
                    fd.proto3_optional, _comment(comments.get((4, mi, 2, fi), ""))))
            messages[m.name] = msg
        for si, s in enumerate(f.service):
            svc = Service(s.name, f.name, _comment(comments.get((6, si), "")),
                          file_comments[f.name])
            for ri, r in enumerate(s.method):
                svc.methods.append(Method(
                    r.name, r.input_type.rsplit(".", 1)[-1], r.output_type.rsplit(".", 1)[-1],
                    _comment(comments.get((6, si, 2, ri), ""))))
            services.append(svc)
    services.sort(key=lambda s: list(CLI_GROUPS).index(s.name))
    return services, messages, file_comments


def first_sentence(comment: str) -> str:
    """The comment's first sentence, over as many lines as it takes."""
    return re.split(r"(?<=\.)\s", " ".join(comment.split("\n")), maxsplit=1)[0]


def snake(name: str) -> str:
    """CreateRootCACertificate -> create_root_ca_certificate."""
    s = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    return re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", s).lower()


def kebab(name: str) -> str:
    """CreateRootCACertificate -> create-root-ca-certificate."""
    return snake(name).replace("_", "-")


# --- docs/api.md --------------------------------------------------------------------------


def _type_text(f: Field) -> str:
    t = f"[`{f.proto_type}`](#{f.proto_type.lower()})" if f.message else f"`{f.proto_type}`"
    if f.repeated:
        return f"repeated {t}"
    if f.optional:
        return f"optional {t}"
    return t


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _field_table(msg: Message) -> list[str]:
    if not msg.fields:
        return ["(no fields)", ""]
    rows = ["| Field | Type | Description |", "|---|---|---|"]
    rows += [f"| `{f.name}` | {_type_text(f)} | {_cell(f.comment)} |" for f in msg.fields]
    return [*rows, ""]


def _referenced(messages: dict[str, Message], roots: list[str]) -> list[str]:
    """Message types used inside the given messages, depth first, each once."""
    seen: list[str] = []

    def visit(name: str) -> None:
        for f in messages[name].fields:
            if f.message and f.message not in seen:
                seen.append(f.message)
                visit(f.message)

    for root in roots:
        visit(root)
    return seen


def render_docs(services: list[Service], messages: dict[str, Message],
                file_comments: dict[str, str]) -> str:
    """docs/api.md."""
    out = [
        "# hsmca.v1 RPC reference",
        "",
        "<!-- Generated by proto/generate_reference.py from proto/hsmca/v1/*.proto and their",
        "     comments; do not edit. Change the .proto comments and run `make proto`. -->",
        "",
        "Every operation below is a unary gRPC call in package `hsmca.v1`, callable with",
        "`hsmca <group> <command>` (flags named after the request fields, `--help` for each),",
        "the Python client in `service.client` ([docs/client.md](client.md)), or any gRPC",
        "client (the server offers reflection). Field names are the proto names; JSON uses",
        "them too (`hsmca call`, `--json`).",
        "",
        "## Conventions",
        "",
        file_comments["hsmca/v1/common.proto"],
        "",
        "## Errors",
        "",
        "A refused call ends with a gRPC status whose details carry a `google.rpc.ErrorInfo`",
        "(`domain` `hsmca`, a machine-readable `reason`, and `metadata.request_id`) and a",
        "`google.rpc.RequestInfo`; the request id is also in the `x-request-id` trailer of",
        "every call. Match on the reason, never on the message. A field that breaks its rule",
        "is `INVALID_ARGUMENT` with reason `InvalidParameter.<Parameter>`, the parameter's API",
        "name (`InvalidParameter.Csr`, `InvalidParameter.Validity`); each operation lists the",
        "other reasons it may return.",
        "",
        "| gRPC status | Reasons | Retry? |",
        "|---|---|---|",
        "| `INVALID_ARGUMENT` | `InvalidParameter.*` | no: fix the request |",
        "| `NOT_FOUND` | `NotFound.*` (also for another tenant's resource) | no |",
        "| `ALREADY_EXISTS` | `AlreadyExists.*` | no |",
        "| `FAILED_PRECONDITION` | `IncorrectStatus.*`, `UnsupportedOperation.*` | no |",
        "| `PERMISSION_DENIED` | `Forbidden.*` | no |",
        "| `RESOURCE_EXHAUSTED` | `LimitExceeded.*` | yes, after the `RetryInfo` delay if sent |",
        "| `UNAVAILABLE` | `ServiceUnavailable.*`, or none (no connection) | yes, with backoff |",
        "| `INTERNAL` | `InternalError` (details only in the service log) | no |",
        "",
    ]
    for svc in services:
        group = CLI_GROUPS[svc.name]
        out += [f"## {svc.name}", "", svc.file_comment, ""]
        if svc.comment:
            out += [svc.comment, ""]
        out += ["| Operation | CLI | Summary |", "|---|---|---|"]
        for m in svc.methods:
            summary = first_sentence(m.comment)
            out.append(f"| [{m.name}](#{m.name.lower()}) | `hsmca {group} {kebab(m.name)}` "
                       f"| {_cell(summary)} |")
        out.append("")
        for m in svc.methods:
            # The comment's "Asynchronous ..." and "Errors: ..." lines as their own paragraphs.
            comment = m.comment.replace("\nAsynchronous ", "\n\n**Asynchronous** ").replace(
                "\nErrors: ", "\n\n**Errors:** ")
            out += [f"### {m.name}", "", comment, "",
                    f"`rpc {m.name}({m.request}) returns ({m.response})` — CLI: "
                    f"`hsmca {group} {kebab(m.name)}`; Python: `client.{group}."
                    f"{snake(m.name)}(...)`.", "",
                    f"Request `{m.request}`:", "", *_field_table(messages[m.request]),
                    f"Response `{m.response}`:", "", *_field_table(messages[m.response])]
    roots = [name for svc in services for m in svc.methods for name in (m.request, m.response)]
    shared = _referenced(messages, roots)
    out += ["## Types used in requests and responses", ""]
    for name in shared:
        msg = messages[name]
        out += [f"### {name}", ""]
        if msg.comment:
            out += [msg.comment, ""]
        out += _field_table(msg)
    return "\n".join(out).rstrip("\n") + "\n"


# --- service/client/generated.py -----------------------------------------------------------


def _wrap(text: str, indent: str, prefix: str = "") -> list[str]:
    lines: list[str] = []
    for paragraph in text.split("\n"):
        lines += textwrap.wrap(paragraph, width=99 - len(indent) - len(prefix),
                               break_long_words=False, break_on_hyphens=False) or [""]
    return [f"{indent}{prefix}{line}".rstrip() for line in lines]


def _annotation(f: Field) -> tuple[str, str]:
    """(type annotation, default) of a dataclass field or keyword argument."""
    if f.repeated:
        return f"tuple[{f.python_type}, ...]", "()"
    if f.message or f.optional:
        return f"{f.python_type} | None", "None"
    return f.python_type, {"str": '""', "bytes": 'b""', "int": "0", "bool": "False"}[
        f.python_type]


def _docstring(text: str, indent: str) -> list[str]:
    first, *rest = (text or "(no comment in the .proto)").replace('"""', "'''").split("\n")
    if not rest and len(first) + len(indent) + 6 <= 99:
        return [f'{indent}"""{first}"""']
    body = _wrap("\n".join([first, *rest]), indent)
    return [f'{indent}"""{body[0].strip()}', *body[1:], f'{indent}"""']


def _py_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _string_lines(key: str, text: str, indent: str) -> list[str]:
    """`key: "text",` split over lines of at most 99 characters (implicit concatenation)."""
    head = f"{indent}{_py_string(key)}: "
    whole = _py_string(text)
    if len(head) + len(whole) + 1 <= 99:
        return [f"{head}{whole},"]
    pieces: list[str] = []
    text_lines = text.split("\n")
    for number, line in enumerate(text_lines):
        # drop_whitespace=False keeps every space, so the pieces concatenate to the line.
        chunks = textwrap.wrap(line, width=80 - len(indent), drop_whitespace=False,
                               break_long_words=True, break_on_hyphens=False) or [""]
        if number < len(text_lines) - 1:
            chunks[-1] += "\n"
        pieces += chunks
    lines = [f"{indent}{_py_string(key)}: ("]
    lines += [f"{indent}    {_py_string(p)}" for p in pieces]
    return [*lines, f"{indent}),"]


def render_client(services: list[Service], messages: dict[str, Message]) -> str:
    """service/client/generated.py."""
    out = [
        '"""Generated by proto/generate_reference.py from proto/hsmca/v1/*.proto; do not edit.',
        "",
        "One frozen dataclass per message (fields and defaults as in proto3: unset `optional`",
        "scalars and messages are None), one method per RPC for the sync and asyncio clients,",
        "and the .proto comments for the CLI's help.",
        '"""',
        "",
        "from __future__ import annotations",
        "",
        "import abc",
        "import dataclasses",
        "from collections.abc import Mapping",
        "from typing import Any, ClassVar, TypeVar",
        "",
        '_R = TypeVar("_R")',
        "",
        "",
        "@dataclasses.dataclass(frozen=True)",
        "class Message:",
        '    """Base of the generated dataclasses: the proto message each one mirrors."""',
        "",
        "    PROTO_MODULE: ClassVar[str]",
        "    PROTO_NAME: ClassVar[str]",
        "",
    ]
    for name in sorted(messages):
        msg = messages[name]
        module = PB2_MODULES[msg.file]
        out += ["", "@dataclasses.dataclass(frozen=True)", f"class {name}(Message):"]
        out += _docstring(msg.comment, "    ")
        out += ["", f'    PROTO_MODULE: ClassVar[str] = "{module}"',
                f'    PROTO_NAME: ClassVar[str] = "{name}"']
        for f in msg.fields:
            ann, default = _annotation(f)
            out += _wrap(f.comment, "    ", "#: ") if f.comment else []
            out.append(f"    {f.name}: {ann} = {default}")
        out.append("")
    out += ["", "#: Every generated dataclass by proto message name.",
            "MESSAGES: Mapping[str, type[Message]] = {"]
    out += [f'    "{name}": {name},' for name in sorted(messages)]
    out += ["}", ""]
    for svc in services:
        for is_async in (False, True):
            cls = f"{'Async' if is_async else ''}{svc.name}Calls"
            kind = "asyncio" if is_async else "blocking"
            out += ["", f"class {cls}(abc.ABC):",
                    f'    """The {svc.name} RPCs as {kind} methods; results are dataclasses."""',
                    "", "    @abc.abstractmethod"]
            if is_async:
                out += ["    async def _call(self, method: str, request: Message, "
                        "response_type: type[_R],", "                    "
                        "timeout: float | None) -> _R:"]
            else:
                out += ["    def _call(self, method: str, request: Message, "
                        "response_type: type[_R],", "              timeout: float | None) -> _R:"]
            out += ['        """Send ``request`` to ``method``; the transport is the '
                    'subclass\'s."""']
            for m in svc.methods:
                req = messages[m.request]
                out += ["", f"    {'async ' if is_async else ''}def {snake(m.name)}("]
                out += ["        self,", "        *,"]
                for f in req.fields:
                    ann, default = _annotation(f)
                    out.append(f"        {f.name}: {ann} = {default},")
                out += ["        timeout: float | None = None,",
                        f"    ) -> {m.response}:"]
                out += _docstring(first_sentence(m.comment), "        ")
                args = [f"{f.name}={f.name}" for f in req.fields]
                call = f"{m.request}({', '.join(args)})"
                lines = textwrap.wrap(call, width=80, break_long_words=False,
                                      subsequent_indent="            ")
                out.append(f"        request = {lines[0]}")
                out += [f"        {line}" for line in lines[1:]]
                aw = "await " if is_async else ""
                out.append(f'        return {aw}self._call("{m.name}", request, {m.response}, '
                           "timeout)")
            out.append("")
    out += ["", "#: RPC name -> (request, response) dataclass, per service.",
            "RPCS: Mapping[str, Mapping[str, tuple[type[Message], type[Message]]]] = {"]
    for svc in services:
        out.append(f'    "{svc.name}": {{')
        out += [f'        "{m.name}": ({m.request}, {m.response}),' for m in svc.methods]
        out.append("    },")
    out += ["}", "", "#: The .proto comment of each RPC (\"Service/Method\").",
            "RPC_DOCS: Mapping[str, str] = {"]
    for svc in services:
        for m in svc.methods:
            out += _string_lines(f"{svc.name}/{m.name}", m.comment, "    ")
    out += ["}", "", "#: The first sentence of each RPC's comment (\"Service/Method\").",
            "RPC_SUMMARIES: Mapping[str, str] = {"]
    for svc in services:
        for m in svc.methods:
            out += _string_lines(f"{svc.name}/{m.name}", first_sentence(m.comment), "    ")
    out += ["}", "", "#: The .proto comment of each field (\"Message.field\").",
            "FIELD_DOCS: Mapping[str, str] = {"]
    for name in sorted(messages):
        for f in messages[name].fields:
            out += _string_lines(f"{name}.{f.name}", f.comment, "    ")
    out += ["}", "", "", "def proto_class(message_type: type[Message]) -> Any:",
            '    """The generated protobuf class a dataclass mirrors."""',
            "    from service.gen.hsmca.v1 import common_pb2, kms_pb2, private_ca_pb2",
            "",
            "    modules = {\"common_pb2\": common_pb2, \"kms_pb2\": kms_pb2, "
            "\"private_ca_pb2\": private_ca_pb2}",
            "    return getattr(modules[message_type.PROTO_MODULE], message_type.PROTO_NAME)",
            ""]
    return "\n".join(out)


def generate(docs: Path, client: Path, proto_dir: Path = ROOT / "proto") -> Iterator[Path]:
    """Write both outputs; yields the paths written."""
    services, messages, file_comments = _load(proto_dir)
    docs.parent.mkdir(parents=True, exist_ok=True)
    docs.write_text(render_docs(services, messages, file_comments))
    yield docs
    client.parent.mkdir(parents=True, exist_ok=True)
    client.write_text(render_client(services, messages))
    yield client


def main() -> int:
    """Command line: regenerate docs/api.md and service/client/generated.py."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=Path, default=ROOT / "docs" / "api.md")
    parser.add_argument("--client", type=Path, default=ROOT / "service" / "client" / "generated.py")
    args = parser.parse_args()
    for path in generate(args.docs, args.client):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
