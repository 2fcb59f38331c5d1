"""HSM-protection conformance check: does the token refuse every route out for a key?

For each non-exportable key (made here, or given by CKA_ID) every export route a PKCS#11
application has is tried, and the token's return code is recorded:
  (a) C_GetAttributeValue of each private component; PKCS#11 v2.40 5.7 requires
      CKR_ATTRIBUTE_SENSITIVE for a sensitive or unextractable attribute;
  (b) C_WrapKey with an AES session key (CKM_AES_KEY_WRAP_PAD, CKM_AES_KEY_WRAP,
      CKM_AES_CBC_PAD); 5.13 requires CKR_KEY_UNEXTRACTABLE for CKA_EXTRACTABLE false;
  (c) C_SetAttributeValue of CKA_EXTRACTABLE=true / CKA_SENSITIVE=false; 4.9 (table 10,
      footnote 11) allows those attributes to change only towards more protection;
  (d) C_CopyObject with the same changes; a copy that is created but keeps the protection
      refuses in effect, a copy that loses it is an export route (and is destroyed);
  (e) the security attributes read before and after, to show nothing changed.
Exit status: 0 every route refused, 1 some route exported, 2 usage or token config error.
One process, one session; keys made here are destroyed whatever happens.

Caution with ``--key-id``: on a non-conforming token routes (c) and (d) may weaken the key
under test (we try to restore CKA_EXTRACTABLE=false / CKA_SENSITIVE=true at once).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

import pkcs11
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass

from hsm.config import TokenConfig, TokenRole, read_pin
from hsm.errors import HsmError
from hsm.export import ephemeral_wrapping_key, key_spec_of, return_code_name
from hsm.keys import KeySpec, destroy_key, generate_key_pair
from hsm.token import Token

REFUSED = "REFUSED"
EXPORTED = "EXPORTED"
CKR_OK = "CKR_OK"

DEFAULT_SPECS = (KeySpec.RSA_2048, KeySpec.EC_P256, KeySpec.EC_P384)
ALL_SPECS = (
    KeySpec.RSA_1024,
    KeySpec.RSA_2048,
    KeySpec.RSA_3072,
    KeySpec.RSA_4096,
    KeySpec.EC_P256,
    KeySpec.EC_P384,
    KeySpec.EC_P521,
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

_WRAP_MECHANISMS: tuple[tuple[Mechanism, bytes | None], ...] = (
    (Mechanism.AES_KEY_WRAP_PAD, None),
    (Mechanism.AES_KEY_WRAP, None),
    (Mechanism.AES_CBC_PAD, bytes(16)),  # a zero IV is fine: nothing is meant to come out
)

_STATE = (
    Attribute.EXTRACTABLE,
    Attribute.SENSITIVE,
    Attribute.NEVER_EXTRACTABLE,
    Attribute.ALWAYS_SENSITIVE,
)
# The values a protected key must show (PKCS#11 v2.40 4.9, table 10).
_PROTECTED = {
    Attribute.EXTRACTABLE: False,
    Attribute.SENSITIVE: True,
    Attribute.NEVER_EXTRACTABLE: True,
    Attribute.ALWAYS_SENSITIVE: True,
}


@dataclasses.dataclass(frozen=True)
class RouteResult:
    """One export attempt against one key and the token's answer."""

    key_type: str
    key_id: str
    route: str
    return_code: str
    verdict: str
    detail: str = ""


def _ckm(mechanism: Mechanism) -> str:
    return "CKM_" + mechanism.name


def _cka(attribute: Attribute) -> str:
    return "CKA_" + attribute.name


def _state(key: Any) -> dict[Attribute, bool]:
    return {a: bool(key[a]) for a in _STATE}


def _state_text(state: dict[Attribute, bool]) -> str:
    return " ".join(f"{_cka(a)}={v}" for a, v in state.items())


def _key_type_name(key: Any) -> str:
    try:
        return key_spec_of(key).value
    except HsmError:
        return str(key.key_type.name)


class _Checker:
    """Runs the routes against one key inside one ``token.run`` call."""

    def __init__(self, token: Token, session: Any, key: Any, key_id: bytes) -> None:
        self.token = token
        self.session = session
        self.key = key
        self.key_id = key_id
        self.key_type = _key_type_name(key)
        self.results: list[RouteResult] = []

    def record(self, route: str, code: str, exported: bool, detail: str = "") -> None:
        self.results.append(
            RouteResult(
                self.key_type,
                self.key_id.hex(),
                route,
                code,
                EXPORTED if exported else REFUSED,
                detail,
            )
        )

    def check_state(self, when: str, before: dict[Attribute, bool] | None) -> dict[Attribute, bool]:
        state = _state(self.key)
        changed = before is not None and state != before
        weak = state != _PROTECTED
        detail = _state_text(state) + (" (changed)" if changed else "")
        self.record(f"attributes {when}", CKR_OK, weak or changed, detail)
        return state

    def get_attributes(self) -> None:
        components = _RSA_PRIVATE if self.key.key_type == KeyType.RSA else _EC_PRIVATE
        for attribute in components:
            route = f"C_GetAttributeValue {_cka(attribute)}"
            try:
                value = self.key[attribute]
            except pkcs11.exceptions.PKCS11Error as e:
                self.record(route, return_code_name(e), False)
            else:
                self.record(route, CKR_OK, bool(value), f"{len(value or b'')} bytes returned")

    def wrap(self) -> None:
        wrapping = ephemeral_wrapping_key(self.session)
        try:
            for mechanism, param in _WRAP_MECHANISMS:
                route = f"C_WrapKey {_ckm(mechanism)}"
                try:
                    data = wrapping.wrap_key(self.key, mechanism=mechanism, mechanism_param=param)
                except pkcs11.exceptions.PKCS11Error as e:
                    self.record(route, return_code_name(e), False)
                else:
                    self.record(route, CKR_OK, True, f"{len(data)} bytes of wrapped key")
        finally:
            wrapping.destroy()

    def set_attributes(self) -> None:
        for attribute, value, safe in (
            (Attribute.EXTRACTABLE, True, False),
            (Attribute.SENSITIVE, False, True),
        ):
            route = f"C_SetAttributeValue {_cka(attribute)}={value}"
            was = bool(self.key[attribute])
            try:
                self.key[attribute] = value
            except pkcs11.exceptions.PKCS11Error as e:
                self.record(route, return_code_name(e), False)
                continue
            now = bool(self.key[attribute])
            detail = f"token accepted; {_cka(attribute)} now reads {now}"
            if now == value and was == safe:
                try:
                    self.key[attribute] = safe  # put the protection back at once
                    detail += f"; restored to {safe}"
                except pkcs11.exceptions.PKCS11Error as e:
                    detail += f"; restoring failed ({return_code_name(e)})"
            self.record(route, CKR_OK, now == value, detail)

    def copy(self) -> None:
        for attribute, value in ((Attribute.EXTRACTABLE, True), (Attribute.SENSITIVE, False)):
            route = f"C_CopyObject {_cka(attribute)}={value}"
            try:
                copied = self.key.copy({attribute: value})
            except pkcs11.exceptions.PKCS11Error as e:
                self.record(route, return_code_name(e), False)
                continue
            try:
                state = _state(copied)
                exported = state[Attribute.EXTRACTABLE] or not state[Attribute.SENSITIVE]
                self.record(
                    route,
                    CKR_OK,
                    exported,
                    f"copy created with {_state_text(state)}; destroyed",
                )
            finally:
                copied.destroy()


def check_key(token: Token, key_id: bytes) -> list[RouteResult]:
    """Try every export route against the private key with this CKA_ID."""

    def run(session: Any) -> list[RouteResult]:
        key = token.find_object(session, key_id, ObjectClass.PRIVATE_KEY)
        checker = _Checker(token, session, key, key_id)
        before = checker.check_state("before", None)
        checker.get_attributes()
        checker.wrap()
        checker.set_attributes()
        checker.copy()
        checker.check_state("after", before)
        return checker.results

    return token.run(run)


def run_conformance(
    token: Token, specs: Sequence[KeySpec], key_ids: Sequence[bytes] = ()
) -> list[RouteResult]:
    """Check the given keys, or fresh non-exportable keys of ``specs`` (destroyed after)."""
    results: list[RouteResult] = []
    if key_ids:
        for key_id in key_ids:
            results.extend(check_key(token, key_id))
        return results
    made: list[bytes] = []
    try:
        for spec in specs:
            key_id = os.urandom(16)
            made.append(key_id)
            generate_key_pair(
                token,
                spec,
                key_id=key_id,
                label=f"hsmca-conformance-{spec.value}-{key_id.hex()[:8]}",
                exportable=False,
            )
            results.extend(check_key(token, key_id))
    finally:
        for key_id in made:
            try:
                destroy_key(token, key_id)
            except (HsmError, pkcs11.exceptions.PKCS11Error) as e:
                print(f"warning: could not destroy key {key_id.hex()}: {e}", file=sys.stderr)
    return results


def format_table(results: Sequence[RouteResult]) -> str:
    """The results as a fixed-width text table."""
    header = ("key type", "key id", "route", "return code", "verdict")
    rows = [header] + [
        (r.key_type, r.key_id, r.route, r.return_code, r.verdict) for r in results
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [" | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hsmca conformance",
        description="Check that a PKCS#11 token refuses every export route for "
        "non-exportable keys. Exit 0: all refused; 1: some route exported; 2: usage error.",
    )
    p.add_argument("--module", required=True, help="path of the PKCS#11 module (.so)")
    p.add_argument("--token-label", required=True, help="label of the token to check")
    p.add_argument(
        "--pin-source", required=True, help="user PIN source: env:NAME or file:PATH"
    )
    p.add_argument(
        "--key-id",
        action="append",
        default=[],
        metavar="HEX",
        help="check this existing key (CKA_ID in hex) instead of making keys; repeatable",
    )
    p.add_argument(
        "--all-types",
        action="store_true",
        help="also RSA-1024/3072/4096 and P-521 (default: RSA-2048, P-256, P-384)",
    )
    p.add_argument("--json", action="store_true", help="print a JSON document, not a table")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``hsmca conformance``; returns the exit status."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else 2
    try:
        key_ids = [bytes.fromhex(k) for k in args.key_id]
    except ValueError:
        print(f"error: --key-id must be hex: {args.key_id}", file=sys.stderr)
        return 2
    specs = ALL_SPECS if args.all_types else DEFAULT_SPECS
    token: Token | None = None
    try:
        pin = read_pin(args.pin_source)
        token = Token(TokenConfig(TokenRole.HSM, args.module, args.token_label, pin))
        results = run_conformance(token, specs, key_ids)
    except HsmError as e:  # missing module, no such token, wrong PIN, unknown key id, ...
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        if token is not None:
            token.close()
    conforms = all(r.verdict == REFUSED for r in results)
    if args.json:
        document = {
            "module": args.module,
            "token_label": args.token_label,
            "conforms": conforms,
            "results": [dataclasses.asdict(r) for r in results],
        }
        print(json.dumps(document, indent=2))
    else:
        print(format_table(results))
        verdict = "every route REFUSED" if conforms else "some route EXPORTED"
        print(f"\n{len(results)} attempts; {verdict}")
    return 0 if conforms else 1


if __name__ == "__main__":
    sys.exit(main())
