"""The per-worker application: token sessions, database engine, domain services, servers.

Built inside each worker process after it starts (never inherited across fork): PKCS#11
sessions and pooled database connections belong to the process that opened them.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from hsm.config import TokenRole
from hsm.token import Token
from service import limits
from service.auth.ratelimit import SharedRateLimiter
from service.config import Config
from service.health import HealthMonitor, database_probe
from service.rpc.server import build_server, graceful_stop, report_health
from service.storage.db import create_engine_for

if TYPE_CHECKING:
    from service.auth.perimeter import CrlHolder, Perimeter
    from service.auth.policy import PolicyHolder
    from service.rpc.tls import ServerTlsFiles

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Running:
    """A started worker: its gRPC and HTTP servers, ports, and the background job thread."""

    grpc_server: Any
    grpc_port: int
    http_port: int
    http_server: Any = None
    job_worker: Any = None
    health: HealthMonitor | None = None

    def stop(self, grace_seconds: float) -> None:
        """Stop accepting calls, let in-flight ones finish, finish the job in hand, stop."""
        if self.health is not None:
            self.health.stop()  # before the server reports its own shutdown
        graceful_stop(self.grpc_server, grace_seconds)
        if self.job_worker is not None:
            self.job_worker.stop(grace_seconds + 5)
        if self.http_server is not None:
            self.http_server.shutdown()
            self.http_server.server_close()


class App:
    """Everything one worker process needs, opened once for the process lifetime."""

    def __init__(self, config: Config) -> None:
        from service import audit
        from service.audit.key import AuditKey
        from service.auth.policy import IssuanceAuthorizer
        from service.kms.service import KmsCertificatesService
        from service.metrics import IssuanceMetrics
        from service.ocsp import OcspResponder
        from service.private_ca.crls import CrlPublisher
        from service.private_ca.issuance import ObserverChain
        from service.private_ca.lifecycle import Lifecycle
        from service.private_ca.service import PrivateCaService

        self.config = config
        limits.configure(limits.Limits(
            max_sans=config.limits.max_sans, max_tags=config.limits.max_tags,
            max_chain_certificates=config.limits.max_chain_certificates))
        self.policy: PolicyHolder | None = None
        self.client_crl: CrlHolder | None = None
        self.tls_files: ServerTlsFiles | None = None
        self.engine = create_engine_for(config.database.url)
        self.hsm_token = Token(config.token_config(TokenRole.HSM))
        self.software_token = Token(config.token_config(TokenRole.SOFTWARE))
        # This process's audit chain; its checkpoints are signed by the token's audit key.
        self.audit = audit.AuditLog(self.engine, default_tenant=config.policy.default_owner,
                                    key=AuditKey.ensure(self.hsm_token),
                                    checkpoint_seconds=config.audit.checkpoint_seconds)
        audit.install(self.audit)
        self.private_ca = PrivateCaService(
            self.engine,
            self.hsm_token,
            self.software_token,
            public_base_url=config.http.public_base_url,
            min_rsa_bits=config.policy.min_rsa_bits,
            # The caller's role bounds what is issued (CAs, names, validity), before
            # anything is counted.
            observer=ObserverChain(IssuanceAuthorizer(), IssuanceMetrics()),
            job_lease_seconds=config.jobs.lease_seconds,
        )
        self.crls = CrlPublisher(self.private_ca)
        self.ocsp = OcspResponder(self.private_ca)
        self.lifecycle = Lifecycle(self.private_ca, self.crls)
        self.kms = KmsCertificatesService(
            self.engine,
            self.hsm_token,
            self.software_token,
            region=config.kms.region,
            account_id=config.kms.account_id,
        )

    def servicers(self) -> list[tuple[Any, Any]]:
        """(add_fn, servicer) pairs for both hsmca.v1 services."""
        from service.servicers.kms import kms_servicer_pair
        from service.servicers.private_ca import private_ca_servicer_pair

        return [
            private_ca_servicer_pair(self.private_ca, self.lifecycle),
            kms_servicer_pair(self.kms),
        ]

    def _renewals(self) -> None:
        """What the background thread renews: CRLs near nextUpdate, then OCSP responses."""
        self.crls.publish_due()
        self.ocsp.refresh_due()

    def http_routes(self) -> list[Any]:
        """The HTTP routes besides CRLs (service/http_routes.py)."""
        from service import metrics
        from service.http_routes import ca_certificate_route, metrics_route, ocsp_route

        database = metrics.DatabaseCollector(self.engine)
        return [ocsp_route(self.ocsp.respond),
                ca_certificate_route(self.crls.ca_certificate),
                metrics_route(lambda: metrics.render(database), metrics.CONTENT_TYPE_LATEST)]

    def perimeter(self, limiter: SharedRateLimiter | None = None) -> tuple[Perimeter, Any]:
        """The call perimeter and gRPC server credentials (None: plaintext) of this config."""
        from service.auth.perimeter import CrlHolder, LocalAdmin, MutualTls
        from service.auth.policy import PolicyHolder
        from service.auth.principal import LOCAL_ADMIN_ID
        from service.rpc.tls import ServerTlsFiles, server_credentials

        config = self.config
        if config.grpc.insecure:
            log.warning(
                "gRPC is PLAINTEXT on %s (grpc.insecure = true, loopback only): every call "
                "runs as principal %r of tenant %r with every permission",
                config.grpc.listen, LOCAL_ADMIN_ID, config.policy.default_owner)
            return LocalAdmin(config.policy.default_owner), None
        self.policy = PolicyHolder(config.auth.policy_file)
        self.client_crl = CrlHolder(config.tls.crl, config.tls.dir / "ca.pem")
        self.tls_files = ServerTlsFiles(config.tls)
        mtls = MutualTls(self.policy, limiter or SharedRateLimiter.create(), self.client_crl)
        log.info("gRPC is mTLS on %s: client certificates verified against %s, policy %s",
                 config.grpc.listen, config.tls.client_ca, config.auth.policy_file)
        return mtls, server_credentials(self.tls_files)

    def reload(self) -> None:
        """SIGHUP: re-read the policy file now (the CRL and TLS files are watched anyway)."""
        if self.policy is not None:
            self.policy.reload()

    def start(self, *, reuse_port: bool, grpc_listen: str | None = None,
              limiter: SharedRateLimiter | None = None) -> Running:
        """Start gRPC, the CRL HTTP server and the background job thread."""
        self.audit.start()  # the chain's first record is a signed checkpoint
        from service.http import HttpBounds, start_crl_server
        from service.private_ca.jobs import JobWorker

        perimeter, credentials = self.perimeter(limiter)
        bounds = self.config.limits
        http_server, _ = start_crl_server(
            self.config.http.listen, self.crls.latest, reuse_port=reuse_port,
            bounds=HttpBounds(read_timeout=bounds.http_read_timeout_seconds,
                              idle_timeout=bounds.http_idle_timeout_seconds,
                              max_connections=bounds.http_max_connections),
            routes=self.http_routes())
        server, port = build_server(
            self.servicers(),
            grpc_listen or self.config.grpc.listen,
            max_workers=self.config.grpc.max_threads,
            reuse_port=reuse_port,
            perimeter=perimeter,
            credentials=credentials,
        )
        server.start()
        health = self.health_monitor(lambda service, serving: report_health(server, service,
                                                                            serving))
        health.start()
        worker = None
        if self.config.jobs.enabled:
            worker = JobWorker(self.private_ca, poll_seconds=self.config.jobs.poll_seconds,
                               crl_check=self._renewals,
                               lease_seconds=self.config.jobs.lease_seconds)
            worker.start()
        else:
            # Tests turn the thread off to leave a job PENDING across a kill -9.
            log.warning("jobs.enabled is false: asynchronous jobs and CRL renewal are not "
                        "run in this process")
        return Running(grpc_server=server, grpc_port=port, http_port=http_server.port,
                       http_server=http_server, job_worker=worker, health=health)

    def health_monitor(self, report: Callable[[str, bool], None]) -> HealthMonitor:
        """The monitor of this process's dependencies: which service needs which."""
        probes = {
            "hsm token": self.hsm_token.probe,
            "software token": self.software_token.probe,
            "database": database_probe(self.engine),
        }
        # Every Private CA key is in the hsm token; KMS keys are in either token.
        needs = {
            "hsmca.v1.PrivateCa": ("hsm token", "database"),
            "hsmca.v1.KmsCertificates": ("hsm token", "software token", "database"),
            "": ("hsm token", "software token", "database"),
        }
        return HealthMonitor(probes, needs, report,
                             interval=self.config.grpc.health_interval_seconds)

    def close(self) -> None:
        """Close token sessions (logging out) and dispose of database connections."""
        from service import audit
        from service.storage.group_commit import group_committer

        # A closing checkpoint: records appended to this chain later are insertions.
        self.audit.close()
        if audit.installed() is self.audit:
            audit.install(None)
        self.hsm_token.close()
        self.software_token.close()
        # The committer holds a connection for the process lifetime; hand it back first.
        group_committer(self.engine).close()
        self.engine.dispose()


def open_app(config: Config) -> App:
    """Open tokens and storage for this process."""
    return App(config)
