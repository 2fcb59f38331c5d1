"""The `hsmca` command: serve, migrate, conformance, call, audit, principal."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from hsm.errors import HsmError
from service.client.commands import register as register_client_commands
from service.config import Config, ConfigError, load_config


def _preflight(config: Config) -> None:
    """Open both tokens once so a bad PIN or label fails here, clearly, before any worker.

    Also creates the software token's sealing key and the hsm token's audit key if missing:
    PKCS#11 has no atomic "create if absent", so doing it once here keeps two workers from
    each creating one.
    """
    from hsm.config import TokenRole
    from hsm.export import ensure_wrapping_key
    from hsm.token import Token
    from service.audit.key import AuditKey

    for role in TokenRole:
        token = Token(config.token_config(role))
        try:
            if role is TokenRole.SOFTWARE:
                ensure_wrapping_key(token)
            else:
                AuditKey.ensure(token)  # signs audit checkpoints; see service/audit
        finally:
            token.close()


def _cmd_serve(args: argparse.Namespace) -> int:
    from service.serve import serve

    config = load_config(args.config)
    if args.workers is not None:
        if args.workers < 1:
            raise ConfigError(f"--workers: must be a positive integer, got {args.workers}")
        config = dataclasses.replace(
            config, grpc=dataclasses.replace(config.grpc, workers=args.workers)
        )
    _preflight(config)
    if not config.grpc.insecure:
        from service.auth.bootstrap import bootstrap

        bootstrap(config)
    return serve(config)


def _cmd_migrate(args: argparse.Namespace) -> int:
    from service.storage.db import migrate

    config = load_config(args.config)
    migrate(config.database.url)
    print(f"database at {config.database} is at the head revision")
    return 0


def _cmd_conformance(args: argparse.Namespace) -> int:
    """Check the configured HSM token, or the one --module/--token-label/--pin-source name."""
    from hsm.config import TokenConfig, TokenRole, read_pin
    from hsm.conformance import run_command

    module, label, pin_source = args.module, args.token_label, args.pin_source
    if not (module and label and pin_source):
        # Only what the options leave open comes from the configuration, so a vendor
        # token can be checked with all three options and no service configuration.
        settings = load_config(args.config).hsm
        module = module or settings.module
        label = label or settings.token_label
        pin_source = pin_source or settings.pin_source
    config = TokenConfig(TokenRole.HSM, module, label, read_pin(pin_source))
    return run_command(config, args)


def _cmd_call(args: argparse.Namespace) -> int:
    from service.client_cli import call

    return call(args.target, args.method, args.data, config=load_config(args.config),
                field=args.field)


# --- `hsmca principal issue|revoke`: client certificates from the operations CA ---------

def _cmd_principal_issue(args: argparse.Namespace) -> int:
    from hsm.config import TokenRole
    from hsm.token import Token
    from service.auth.bootstrap import issue_principal

    config = load_config(args.config)
    token = Token(config.token_config(TokenRole.HSM))
    try:
        issued = issue_principal(config, token, args.id, args.out, name=args.name,
                                 days=args.days)
    finally:
        token.close()
    print(f"principal {issued.principal_id}: certificate {issued.certificate}, key "
          f"{issued.key} (serial {issued.serial:x}); map it to a tenant and roles in "
          f"{config.auth.policy_file}")
    return 0


def _cmd_principal_revoke(args: argparse.Namespace) -> int:
    from cryptography import x509

    from hsm.config import TokenRole
    from hsm.token import Token
    from service.auth.bootstrap import revoke_principal

    config = load_config(args.config)
    serials = [int(s, 16) for s in args.serial]
    for path in args.cert:
        serials.append(x509.load_pem_x509_certificate(path.read_bytes()).serial_number)
    if not serials:
        raise ConfigError("principal revoke: give --cert FILE or --serial HEX")
    token = Token(config.token_config(TokenRole.HSM))
    try:
        crl = revoke_principal(config, token, serials)
    finally:
        token.close()
    print(f"revoked {', '.join(f'{s:x}' for s in serials)}; CRL {crl} (servers reload it)")
    return 0


def _add_principal_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    principal = sub.add_parser("principal", help="client certificates for principals")
    verbs = principal.add_subparsers(dest="verb", required=True)
    p = verbs.add_parser("issue", help="issue a client certificate from the operations CA")
    p.add_argument("--id", required=True,
                   help="principal id: a URI SAN if it has a scheme (spiffe://...), else the CN")
    p.add_argument("--out", required=True, type=Path, help="directory for NAME.pem, NAME.key")
    p.add_argument("--name", help="file name stem (default: the id's last path segment)")
    p.add_argument("--days", type=int, default=90, help="validity in days (default 90)")
    p.set_defaults(fn=_cmd_principal_issue)
    p = verbs.add_parser("revoke", help="revoke client certificates (the servers refuse them)")
    p.add_argument("--cert", type=Path, action="append", default=[], help="certificate PEM")
    p.add_argument("--serial", action="append", default=[], help="serial number, hex")
    p.set_defaults(fn=_cmd_principal_revoke)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `hsmca` console script."""
    from hsm.conformance import add_arguments as add_conformance_arguments

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="hsmca", description=__doc__)
    parser.add_argument("--config", help="TOML file (default: $HSMCA_CONFIG or built-in)")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("serve", help="run the gRPC service with N worker processes")
    p.add_argument("--workers", type=int, help="worker processes (default: grpc.workers)")
    p.set_defaults(fn=_cmd_serve)
    p = sub.add_parser("migrate", help="apply database migrations")
    p.set_defaults(fn=_cmd_migrate)
    p = sub.add_parser(
        "conformance",
        help="check that a token refuses every key export route",
        description="Check that a PKCS#11 token refuses every export route for non-exportable "
        "keys. Exit 0: every route refused; 1: some route exported or attribute check "
        "failed; 2: usage or token error, or no key type the token can generate.",
    )
    add_conformance_arguments(p, token_required=False)
    p.set_defaults(fn=_cmd_conformance)
    p = sub.add_parser("call", help="call an RPC with a JSON request, print the JSON response")
    p.add_argument("method", help="e.g. PrivateCa/CreateRootCACertificate")
    p.add_argument("data", nargs="?", default="{}", help="request as JSON (proto field names)")
    p.add_argument("--target", help="HOST:PORT (default: $HSMCA_TARGET, else grpc.listen)")
    p.add_argument("--field", help="print only this field of the response")
    p.set_defaults(fn=_cmd_call)
    from service.audit.cli import add_audit_parser

    add_audit_parser(sub)
    register_client_commands(sub)
    _add_principal_commands(sub)
    args = parser.parse_args(argv)

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        code: int = args.fn(args)
        return code
    except (ConfigError, HsmError) as e:
        print(f"hsmca: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
