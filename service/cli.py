"""The `hsmca` command: serve, migrate, conformance, call, audit."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from collections.abc import Sequence

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

    return call(args.target, args.method, args.data)


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
    p.add_argument("--target", default="127.0.0.1:50051")
    p.set_defaults(fn=_cmd_call)
    from service.audit.cli import add_audit_parser

    add_audit_parser(sub)
    register_client_commands(sub)
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
