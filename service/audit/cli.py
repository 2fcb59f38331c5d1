"""The ``hsmca audit`` subcommands: ``verify`` (exit 1 on any finding) and ``list``."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from typing import Any

__all__ = ["add_audit_parser"]


def _time(text: str) -> dt.datetime:
    value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


def add_audit_parser(sub: Any) -> None:
    """Register ``hsmca audit verify`` and ``hsmca audit list`` on the command's subparsers."""
    audit = sub.add_parser("audit", help="verify or list the tamper-evident audit log")
    commands = audit.add_subparsers(dest="audit_command", required=True)
    p = commands.add_parser("verify", help="check every chain and signed checkpoint; exit 1 "
                                           "on any deleted, altered, reordered or inserted record")
    p.add_argument("--json", action="store_true", help="findings as JSON lines")
    p.set_defaults(fn=_cmd_verify)
    p = commands.add_parser("list", help="records as JSON lines, oldest first")
    p.add_argument("--principal")
    p.add_argument("--action", help="exact, or a prefix ending in * (certificate.*)")
    p.add_argument("--resource", help="a resource identifier the record names")
    p.add_argument("--tenant")
    p.add_argument("--since", type=_time, help="ISO 8601 time (UTC unless given)")
    p.add_argument("--until", type=_time, help="ISO 8601 time (UTC unless given), exclusive")
    p.add_argument("--limit", type=int)
    p.set_defaults(fn=_cmd_list)


def _cmd_verify(args: argparse.Namespace) -> int:
    from hsm.config import TokenRole
    from hsm.token import Token
    from service.audit.key import AuditKey
    from service.audit.verify import verify_log
    from service.config import load_config
    from service.storage.db import create_engine_for

    config = load_config(args.config)
    token = Token(config.token_config(TokenRole.HSM))
    try:
        public_key_info = AuditKey.existing(token).public_key_info
    finally:
        token.close()
    engine = create_engine_for(config.database.url)
    try:
        with engine.connect() as conn:
            report = verify_log(conn, public_key_info)
    finally:
        engine.dispose()
    for finding in report.findings:
        if args.json:
            print(json.dumps(finding.as_json()))
        else:
            seq = "" if finding.seq is None else f"/{finding.seq}"
            print(f"{finding.kind} {finding.writer}{seq}: {finding.message}")
    summary = (f"{report.chains} chain(s), {report.records} record(s), "
               f"{report.checkpoints} valid checkpoint(s), {len(report.findings)} finding(s)")
    if report.unanchored:
        summary += (f"; {sum(report.unanchored.values())} record(s) not yet covered by a "
                    "checkpoint")
    print(summary, file=sys.stderr)
    return 0 if report.ok else 1


def _cmd_list(args: argparse.Namespace) -> int:
    from service.audit.verify import list_records
    from service.config import load_config
    from service.storage.db import create_engine_for

    config = load_config(args.config)
    engine = create_engine_for(config.database.url)
    try:
        with engine.connect() as conn:
            for rec in list_records(conn, principal=args.principal, action=args.action,
                                    resource=args.resource, tenant=args.tenant,
                                    since=args.since, until=args.until, limit=args.limit):
                print(json.dumps(rec.as_json(), ensure_ascii=False))
    finally:
        engine.dispose()
    return 0
