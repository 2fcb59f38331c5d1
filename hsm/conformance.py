"""HSM-protection conformance check: does the token refuse every route out for a key?

It runs on any PKCS#11 token and assumes no token's mechanism set: it reads the mechanism
list first (hsm/capabilities.py), makes a non-exportable key (the service's own template)
of every type the token can generate among RSA-2048/3072/4096, P-256/384/521 and SM2, and
reports the others as skipped with the reason. For each key (made here, or named by
CKA_ID) every export route a PKCS#11 application has is tried and the token's return code
recorded:
  (a) the attribute semantics of a key generated in the token (PKCS#11 v2.40 4.9, table
      10): CKA_SENSITIVE true, CKA_EXTRACTABLE false, CKA_LOCAL, CKA_ALWAYS_SENSITIVE and
      CKA_NEVER_EXTRACTABLE true; a key the token did not generate (CKA_LOCAL false) must
      not claim CKA_NEVER_EXTRACTABLE;
  (b) C_GetAttributeValue of each private component; 5.7 requires CKR_ATTRIBUTE_SENSITIVE;
  (c) C_WrapKey with every wrapping mechanism the token lists (CKM_AES_KEY_WRAP,
      CKM_AES_KEY_WRAP_PAD, CKM_AES_CBC_PAD, CKM_DES3_CBC_PAD, CKM_RSA_PKCS,
      CKM_RSA_PKCS_OAEP) and a session wrapping key the token makes; 5.13 requires
      CKR_KEY_UNEXTRACTABLE for CKA_EXTRACTABLE false;
  (d) C_SetAttributeValue of CKA_EXTRACTABLE=true / CKA_SENSITIVE=false; table 10
      (footnote 11) allows those attributes to change only towards more protection;
  (e) C_CopyObject with the same changes; a copy that is made but keeps the protection
      refuses in effect, a copy that loses it is an export route (and is destroyed);
  (f) the security attributes read again at the end, to show nothing changed.
Each route is REFUSED (with the CKR_ code), NOT_OFFERED by the token, or EXPORTED; each
attribute check HOLDS or is VIOLATED. Exit status: 0 every route refused or not offered and
every check holds; 1 some route EXPORTED or check VIOLATED; 2 usage or token configuration
error, or no key type the token can generate. Keys made here are destroyed whatever happens.

Caution with ``--key-id``: on a non-conforming token routes (d) and (e) may weaken the key
under test (we try to restore CKA_EXTRACTABLE=false / CKA_SENSITIVE=true at once).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pkcs11
from pkcs11 import MGF, Attribute, KeyType, Mechanism, MechanismFlag, ObjectClass

from hsm.capabilities import (
    TokenIdentity,
    keygen_skip_reason,
    mechanism_info,
    mechanism_name,
    offers,
    read_identity,
)
from hsm.config import TokenConfig, TokenRole, read_pin
from hsm.errors import HsmError
from hsm.export import key_spec_of, return_code_name
from hsm.keys import KeySpec, destroy_key, generate_in_session, key_pair_templates
from hsm.token import Token

REFUSED = "REFUSED"
NOT_OFFERED = "NOT_OFFERED"
EXPORTED = "EXPORTED"
HOLDS = "HOLDS"
VIOLATED = "VIOLATED"
FAILING = frozenset({EXPORTED, VIOLATED})
TESTED = "TESTED"
SKIPPED = "SKIPPED"
CKR_OK = "CKR_OK"

#: Every key type the check tries, in report order.
KEY_TYPES = (
    KeySpec.RSA_2048,
    KeySpec.RSA_3072,
    KeySpec.RSA_4096,
    KeySpec.EC_P256,
    KeySpec.EC_P384,
    KeySpec.EC_P521,
    KeySpec.EC_SM2,
)

_RSA_PRIVATE = (
    Attribute.PRIVATE_EXPONENT,
    Attribute.PRIME_1,
    Attribute.PRIME_2,
    Attribute.EXPONENT_1,
    Attribute.EXPONENT_2,
    Attribute.COEFFICIENT,
)
_EC_PRIVATE = (Attribute.VALUE,)


@dataclasses.dataclass(frozen=True)
class _WrapRoute:
    mechanism: Mechanism
    param: Any
    wrapping_key: str  # "AES", "DES3" or "RSA": what the token must make to wrap with


# A zero IV is fine: nothing is meant to come out.
_WRAP_ROUTES = (
    _WrapRoute(Mechanism.AES_KEY_WRAP, None, "AES"),
    _WrapRoute(Mechanism.AES_KEY_WRAP_PAD, None, "AES"),
    _WrapRoute(Mechanism.AES_CBC_PAD, bytes(16), "AES"),
    _WrapRoute(Mechanism.DES3_CBC_PAD, bytes(8), "DES3"),
    _WrapRoute(Mechanism.RSA_PKCS, None, "RSA"),
    _WrapRoute(Mechanism.RSA_PKCS_OAEP, (Mechanism.SHA_1, MGF.SHA1, None), "RSA"),
)
_WRAPPING_KEY_GEN = {
    "AES": Mechanism.AES_KEY_GEN,
    "DES3": Mechanism.DES3_KEY_GEN,
    "RSA": Mechanism.RSA_PKCS_KEY_PAIR_GEN,
}

# The values a protected key shows, in the order they are reported (PKCS#11 v2.40 4.9).
_PROTECTED = (
    (Attribute.SENSITIVE, True),
    (Attribute.EXTRACTABLE, False),
    (Attribute.LOCAL, True),
    (Attribute.ALWAYS_SENSITIVE, True),
    (Attribute.NEVER_EXTRACTABLE, True),
)


@dataclasses.dataclass(frozen=True)
class RouteResult:
    """One export attempt or attribute check against one key, and the token's answer."""

    key_type: str
    key_id: str
    route: str
    return_code: str
    verdict: str
    detail: str = ""

    @property
    def failed(self) -> bool:
        """True if the key got out (EXPORTED) or an attribute check was VIOLATED."""
        return self.verdict in FAILING


@dataclasses.dataclass(frozen=True)
class KeyTypeResult:
    """Whether a key type was TESTED or SKIPPED (with the reason)."""

    key_type: str
    status: str
    reason: str = ""


@dataclasses.dataclass(frozen=True)
class ConformanceReport:
    """Everything a run found: the token, the key types, every route's result."""

    module: str
    token: TokenIdentity
    checked_at: str
    key_types: tuple[KeyTypeResult, ...]
    results: tuple[RouteResult, ...]

    @property
    def tested(self) -> bool:
        """True if at least one key was checked."""
        return bool(self.results)

    @property
    def conforms(self) -> bool:
        """True if some key was checked and no route exported it or check failed."""
        return self.tested and not any(r.failed for r in self.results)

    @property
    def exit_status(self) -> int:
        """0 conforms, 1 some failure, 2 nothing could be tested."""
        if not self.tested:
            return 2
        return 0 if self.conforms else 1

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready document of the whole report."""
        return {
            "module": self.module,
            "token": dataclasses.asdict(self.token),
            "checked_at": self.checked_at,
            "conforms": self.conforms,
            "exit_status": self.exit_status,
            "key_types": [dataclasses.asdict(k) for k in self.key_types],
            "results": [dataclasses.asdict(r) for r in self.results],
        }


def _cka(attribute: Attribute) -> str:
    return "CKA_" + attribute.name


def _key_type_name(key: Any) -> str:
    try:
        return key_spec_of(key).value
    except HsmError:
        return str(key.key_type.name)


def _destroy_quietly(obj: Any) -> None:
    try:
        obj.destroy()
    except pkcs11.exceptions.PKCS11Error:
        pass  # a session object also dies with its session


class _Checker:
    """Runs every route against one key inside one ``token.run`` call."""

    def __init__(self, token: Token, session: Any, key: Any, key_id: bytes) -> None:
        self.token = token
        self.session = session
        self.key = key
        self.key_id = key_id
        self.key_type = _key_type_name(key)
        self.results: list[RouteResult] = []

    def record(self, route: str, code: str, verdict: str, detail: str = "") -> None:
        self.results.append(
            RouteResult(self.key_type, self.key_id.hex(), route, code, verdict, detail)
        )

    def read(self, attribute: Attribute) -> bool | str:
        """The attribute as a bool, or the CKR_ name of the error reading it."""
        try:
            return bool(self.key[attribute])
        except pkcs11.exceptions.PKCS11Error as e:
            return return_code_name(e)

    def state(self) -> dict[Attribute, bool | str]:
        return {a: self.read(a) for a, _ in _PROTECTED}

    def attribute_semantics(self) -> dict[Attribute, bool | str]:
        state = self.state()
        for attribute, wanted in _PROTECTED:
            value = state[attribute]
            route = f"attribute {_cka(attribute)} is {str(wanted).lower()}"
            if isinstance(value, str):
                self.record(route, value, VIOLATED, "cannot be read")
            else:
                self.record(
                    route,
                    CKR_OK,
                    HOLDS if value == wanted else VIOLATED,
                    f"reads {str(value).lower()}",
                )
        if state[Attribute.LOCAL] is False:
            # The key came from outside (C_CreateObject, C_UnwrapKey): it was known in
            # plaintext, so the token must not vouch that it never was.
            never = state[Attribute.NEVER_EXTRACTABLE]
            self.record(
                "attribute CKA_NEVER_EXTRACTABLE is false on a key not generated in the token",
                CKR_OK if isinstance(never, bool) else never,
                HOLDS if never is False else VIOLATED,
                f"reads {str(never).lower()}" if isinstance(never, bool) else "cannot be read",
            )
        return state

    def get_attributes(self) -> None:
        components = _RSA_PRIVATE if self.key.key_type == KeyType.RSA else _EC_PRIVATE
        for attribute in components:
            route = f"C_GetAttributeValue {_cka(attribute)}"
            try:
                value = self.key[attribute]
            except pkcs11.exceptions.PKCS11Error as e:
                self.record(route, return_code_name(e), REFUSED)
            else:
                got = len(value or b"")
                self.record(
                    route, CKR_OK, EXPORTED if got else REFUSED, f"{got} bytes returned"
                )

    def _make_wrapping_key(self, kind: str) -> tuple[Any, list[Any]]:
        """(key to wrap with, objects to destroy); raises PKCS11Error if it cannot."""
        common = {Attribute.TOKEN: False, Attribute.WRAP: True}
        if kind == "RSA":
            public, private = self.session.generate_keypair(
                KeyType.RSA,
                2048,
                store=False,
                public_template={**common, Attribute.ENCRYPT: False, Attribute.VERIFY: False},
                private_template={Attribute.TOKEN: False, Attribute.UNWRAP: True},
            )
            return public, [public, private]
        key_type = KeyType.AES if kind == "AES" else KeyType.DES3
        key = self.session.generate_key(
            key_type,
            256 if kind == "AES" else None,
            store=False,
            template={**common, Attribute.SENSITIVE: True, Attribute.UNWRAP: False},
        )
        return key, [key]

    def wrap(self) -> None:
        keys: dict[str, Any] = {}
        made: list[Any] = []
        try:
            for wrap in _WRAP_ROUTES:
                route = f"C_WrapKey {mechanism_name(int(wrap.mechanism))}"
                if not offers(self.token, wrap.mechanism):
                    self.record(route, "-", NOT_OFFERED, "not in the token's mechanism list")
                    continue
                gen = _WRAPPING_KEY_GEN[wrap.wrapping_key]
                if wrap.wrapping_key not in keys:
                    if not offers(self.token, gen):
                        keys[wrap.wrapping_key] = f"{mechanism_name(int(gen))} is not listed"
                    else:
                        try:
                            key, objects = self._make_wrapping_key(wrap.wrapping_key)
                        except pkcs11.exceptions.PKCS11Error as e:
                            keys[wrap.wrapping_key] = (
                                f"{mechanism_name(int(gen))} failed ({return_code_name(e)})"
                            )
                        else:
                            keys[wrap.wrapping_key] = key
                            made.extend(objects)
                wrapping = keys[wrap.wrapping_key]
                if isinstance(wrapping, str):
                    detail = f"no {wrap.wrapping_key} key to wrap with: {wrapping}"
                    self.record(route, "-", NOT_OFFERED, detail)
                    continue
                try:
                    data = wrapping.wrap_key(
                        self.key, mechanism=wrap.mechanism, mechanism_param=wrap.param
                    )
                except pkcs11.exceptions.MechanismInvalid as e:
                    # Listed for other uses only (SoftHSM lists CKM_AES_CBC_PAD without
                    # CKF_WRAP): the route does not exist. With CKF_WRAP set it is a refusal.
                    info = mechanism_info(self.token, wrap.mechanism)
                    if info is not None and info.has(MechanismFlag.WRAP):
                        self.record(route, return_code_name(e), REFUSED, "listed with CKF_WRAP")
                    else:
                        detail = "listed without CKF_WRAP; C_WrapKey does not take it"
                        self.record(route, return_code_name(e), NOT_OFFERED, detail)
                except pkcs11.exceptions.PKCS11Error as e:
                    self.record(route, return_code_name(e), REFUSED)
                else:
                    self.record(route, CKR_OK, EXPORTED, f"{len(data)} bytes of wrapped key")
        finally:
            for obj in made:
                _destroy_quietly(obj)

    def set_attributes(self) -> None:
        for attribute, value, safe in (
            (Attribute.EXTRACTABLE, True, False),
            (Attribute.SENSITIVE, False, True),
        ):
            route = f"C_SetAttributeValue {_cka(attribute)}={str(value).lower()}"
            was = self.read(attribute)
            try:
                self.key[attribute] = value
            except pkcs11.exceptions.PKCS11Error as e:
                self.record(route, return_code_name(e), REFUSED)
                continue
            now = self.read(attribute)
            detail = f"token accepted; {_cka(attribute)} now reads {str(now).lower()}"
            if now == value and was == safe:
                try:
                    self.key[attribute] = safe  # put the protection back at once
                    detail += f"; restored to {str(safe).lower()}"
                except pkcs11.exceptions.PKCS11Error as e:
                    detail += f"; restoring failed ({return_code_name(e)})"
            self.record(route, CKR_OK, EXPORTED if now == value else REFUSED, detail)

    def copy(self) -> None:
        for attribute, value in ((Attribute.EXTRACTABLE, True), (Attribute.SENSITIVE, False)):
            route = f"C_CopyObject {_cka(attribute)}={str(value).lower()}"
            try:
                copied = self.key.copy({attribute: value})
            except pkcs11.exceptions.PKCS11Error as e:
                self.record(route, return_code_name(e), REFUSED)
                continue
            try:
                extractable = bool(copied[Attribute.EXTRACTABLE])
                sensitive = bool(copied[Attribute.SENSITIVE])
                self.record(
                    route,
                    CKR_OK,
                    EXPORTED if extractable or not sensitive else REFUSED,
                    f"copy made with CKA_EXTRACTABLE={str(extractable).lower()} "
                    f"CKA_SENSITIVE={str(sensitive).lower()}; destroyed",
                )
            finally:
                _destroy_quietly(copied)

    def unchanged(self, before: dict[Attribute, bool | str]) -> None:
        after = self.state()
        changed = [
            f"{_cka(a)} {str(before[a]).lower()} -> {str(after[a]).lower()}"
            for a, _ in _PROTECTED
            if after[a] != before[a]
        ]
        self.record(
            "attributes unchanged after the attempts",
            CKR_OK,
            VIOLATED if changed else HOLDS,
            "; ".join(changed) or "as before",
        )


def check_key(token: Token, key_id: bytes) -> list[RouteResult]:
    """Every check and export route against the private key with this CKA_ID."""

    def run(session: Any) -> list[RouteResult]:
        key = token.find_object(session, key_id, ObjectClass.PRIVATE_KEY)
        checker = _Checker(token, session, key, key_id)
        before = checker.attribute_semantics()
        checker.get_attributes()
        checker.wrap()
        checker.set_attributes()
        checker.copy()
        checker.unchanged(before)
        return checker.results

    return token.run(run)


def _generate(token: Token, spec: KeySpec, key_id: bytes) -> None:
    """A non-exportable key pair made exactly as the service makes one, nothing checked."""
    public, private = key_pair_templates(
        key_id=key_id,
        label=f"hsmca-conformance-{spec.value}-{key_id.hex()[:8]}",
        exportable=False,
    )
    token.run(lambda session: generate_in_session(session, spec, public, private))


def run_conformance(
    token: Token,
    key_types: Sequence[KeySpec] = KEY_TYPES,
    key_ids: Sequence[bytes] = (),
    *,
    progress: Callable[[str], None] | None = None,
) -> ConformanceReport:
    """Check the given keys, or fresh non-exportable keys of each type the token can make."""
    checked_at = datetime.datetime.now(datetime.UTC).replace(microsecond=0).isoformat()
    identity = read_identity(token)
    results: list[RouteResult] = []
    types: list[KeyTypeResult] = []
    if key_ids:
        for key_id in key_ids:
            found = check_key(token, key_id)
            results.extend(found)
            types.append(KeyTypeResult(found[0].key_type, TESTED, f"key {key_id.hex()}"))
        return ConformanceReport(
            token.config.module, identity, checked_at, tuple(types), tuple(results)
        )
    for spec in key_types:
        reason = keygen_skip_reason(token, spec)
        if reason is not None:
            types.append(KeyTypeResult(spec.value, SKIPPED, reason))
            continue
        if progress is not None:
            progress(f"checking {spec.value}")
        key_id = os.urandom(16)
        try:
            try:
                _generate(token, spec, key_id)
            except pkcs11.exceptions.PKCS11Error as e:
                types.append(
                    KeyTypeResult(
                        spec.value,
                        SKIPPED,
                        f"C_GenerateKeyPair of a non-exportable key failed "
                        f"({return_code_name(e)})",
                    )
                )
                continue
            results.extend(check_key(token, key_id))
            types.append(KeyTypeResult(spec.value, TESTED))
        finally:
            try:
                destroy_key(token, key_id)
            except (HsmError, pkcs11.exceptions.PKCS11Error) as e:
                print(f"warning: could not destroy key {key_id.hex()}: {e}", file=sys.stderr)
    return ConformanceReport(
        token.config.module, identity, checked_at, tuple(types), tuple(results)
    )


# --- rendering --------------------------------------------------------------------------

_IDENTITY_ROWS = (
    ("token label", "label"),
    ("manufacturer", "manufacturer"),
    ("model", "model"),
    ("serial number", "serial"),
    ("hardware version", "hardware_version"),
    ("firmware version", "firmware_version"),
    ("slot", "slot_description"),
    ("library", "library_description"),
    ("library manufacturer", "library_manufacturer"),
    ("library version", "library_version"),
    ("Cryptoki version", "cryptoki_version"),
)
_ROUTE_HEADER = ("key type", "key id", "route", "return code", "verdict", "detail")


def _route_rows(report: ConformanceReport) -> list[tuple[str, ...]]:
    return [
        (r.key_type, r.key_id, r.route, r.return_code, r.verdict, r.detail)
        for r in report.results
    ]


def _summary(report: ConformanceReport) -> str:
    tested = [k.key_type for k in report.key_types if k.status == TESTED]
    if not report.tested:
        return "no key type could be tested on this token: nothing was checked"
    failed = [r for r in report.results if r.failed]
    if not failed:
        return (
            f"{len(report.results)} checks on {', '.join(tested)}: every route REFUSED or "
            "NOT_OFFERED, every attribute check HOLDS"
        )
    named = "; ".join(f"{r.key_type} {r.route}: {r.verdict}" for r in failed)
    return f"{len(failed)} of {len(report.results)} checks FAILED: {named}"


def format_table(report: ConformanceReport) -> str:
    """The report as text for a terminal: identity, key types, a fixed-width table."""
    lines = [f"PKCS#11 module: {report.module}"]
    for title, field in _IDENTITY_ROWS:
        lines.append(f"{title + ':':22}{getattr(report.token, field)}")
    lines.append("")
    for k in report.key_types:
        lines.append(f"{k.key_type:9} {k.status}" + (f": {k.reason}" if k.reason else ""))
    if report.results:  # details of each route: --json or --report
        rows = [_ROUTE_HEADER[:5], *(row[:5] for row in _route_rows(report))]
        widths = [max(len(row[i]) for row in rows) for i in range(5)]
        table = [" | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
        table.insert(1, "-+-".join("-" * w for w in widths))
        lines.append("")
        lines.extend(line.rstrip() for line in table)
    lines.extend(["", f"{_summary(report)} (exit {report.exit_status})"])
    return "\n".join(lines)


def _md(cell: str) -> str:
    return cell.replace("|", "\\|").replace("\n", " ") or " "


def format_markdown(report: ConformanceReport) -> str:
    """The report as a Markdown document an auditor can file."""
    verdict = {0: "CONFORMS", 1: "DOES NOT CONFORM", 2: "NOT TESTED"}[report.exit_status]
    out = [
        "# HSM-protection conformance report",
        "",
        f"**Result: {verdict}** (exit status {report.exit_status}). "
        f"{_summary(report)[0].upper()}{_summary(report)[1:]}.",
        "",
        f"Checked at {report.checked_at} by `hsmca conformance`, PKCS#11 module "
        f"`{report.module}`.",
        "",
        "## Token",
        "",
        "| | |",
        "|---|---|",
    ]
    out += [f"| {title} | {_md(getattr(report.token, f))} |" for title, f in _IDENTITY_ROWS]
    out += ["", "## Key types", "", "| key type | status | reason |", "|---|---|---|"]
    out += [f"| {k.key_type} | {k.status} | {_md(k.reason)} |" for k in report.key_types]
    out += [
        "",
        "## Routes",
        "",
        "| " + " | ".join(_ROUTE_HEADER) + " |",
        "|" + "---|" * len(_ROUTE_HEADER),
    ]
    out += ["| " + " | ".join(_md(c) for c in row) + " |" for row in _route_rows(report)]
    out += [
        "",
        "## How to read this",
        "",
        "- REFUSED: the token returned the error code shown (or, for C_CopyObject, made a copy "
        "that kept the protection); nothing left the token.",
        "- NOT_OFFERED: the token does not list the mechanism (or cannot make a key to wrap "
        "with), so the route does not exist on this token.",
        "- EXPORTED: key material or an unprotected copy came out. A failure.",
        "- HOLDS / VIOLATED: the key's security attributes read back as PKCS#11 v2.40 "
        "section 4.9 requires for a key generated non-extractable in the token, or not.",
        "- Keys made for the check were generated with CKA_TOKEN, CKA_PRIVATE and "
        "CKA_SENSITIVE true and CKA_EXTRACTABLE false, and destroyed afterwards.",
        "",
    ]
    return "\n".join(out)


# --- command line ------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser, *, token_required: bool) -> None:
    """The options of ``hsmca conformance``; the token ones may default to the service's."""
    default = "" if token_required else " (default: the configured HSM token's)"
    parser.add_argument(
        "--module", required=token_required, help="path of the PKCS#11 module (.so)" + default
    )
    parser.add_argument(
        "--token-label", required=token_required, help="label of the token to check" + default
    )
    parser.add_argument(
        "--pin-source",
        required=token_required,
        help="user PIN source: env:NAME or file:PATH" + default,
    )
    parser.add_argument(
        "--key-id",
        action="append",
        default=[],
        metavar="HEX",
        help="check this existing key (CKA_ID in hex) instead of making keys; repeatable",
    )
    parser.add_argument(
        "--key-type",
        action="append",
        default=[],
        choices=[spec.value for spec in KEY_TYPES],
        help="make and check only this key type; repeatable (default: every type)",
    )
    parser.add_argument("--json", action="store_true", help="print a JSON document, not a table")
    parser.add_argument(
        "--report", metavar="FILE", help="also write the report as Markdown to FILE"
    )


def run_command(config: TokenConfig, args: argparse.Namespace) -> int:
    """Run the check the parsed options ask for; print and write the report; exit status."""
    try:
        key_ids = [bytes.fromhex(k) for k in args.key_id]
    except ValueError:
        print(f"error: --key-id must be hex: {args.key_id}", file=sys.stderr)
        return 2
    key_types = [KeySpec(k) for k in args.key_type] or list(KEY_TYPES)
    token = Token(config)
    try:
        report = run_conformance(token, key_types, key_ids)
    finally:
        token.close()
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        print(format_table(report))
    if args.report:
        Path(args.report).write_text(format_markdown(report), encoding="utf-8")
    if not report.tested:
        print(
            f"error: token {config.token_label!r} can generate none of the key types "
            f"{', '.join(k.value for k in key_types)}; nothing was checked",
            file=sys.stderr,
        )
    return report.exit_status


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m hsm.conformance``: the check without the service's configuration."""
    parser = argparse.ArgumentParser(
        prog="python -m hsm.conformance",
        description="Check that a PKCS#11 token refuses every export route for non-exportable "
        "keys. Exit 0: all refused; 1: some route exported; 2: usage error or nothing testable.",
    )
    add_arguments(parser, token_required=True)
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else 2
    try:
        config = TokenConfig(
            TokenRole.HSM, args.module, args.token_label, read_pin(args.pin_source)
        )
        return run_command(config, args)
    except HsmError as e:  # missing module, no such token, wrong PIN, unknown key id, ...
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
