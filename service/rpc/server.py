"""Build the gRPC server every worker process runs: interceptor, health, reflection, port.

Scaling is by processes, not threads (docs/architecture.md: one thread per process in the token),
so each worker builds its own server on the same address with ``grpc.so_reuseport`` and the
kernel spreads connections between them.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable, Sequence
from concurrent import futures
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from service.auth.perimeter import Perimeter
from service.gen.hsmca.v1 import kms_pb2, private_ca_pb2
from service.rpc.interceptor import HsmcaServerInterceptor

__all__ = ["MAX_MESSAGE_BYTES", "AddServicerFn", "build_server", "graceful_stop", "report_health",
           "service_names"]

_log = logging.getLogger("hsmca.rpc")

#: Largest message the server sends or accepts: gRPC's default receive limit, set explicitly
#: on both sides so a response a default client cannot read is never sent (list pages are
#: bounded well below it by their page size and the per-resource bounds).
MAX_MESSAGE_BYTES = 4 * 1024 * 1024

#: A generated ``add_XxxServicer_to_server(servicer, server)`` function.
AddServicerFn = Callable[[Any, grpc.Server], None]

#: "XxxServicer" (generated base class name) -> full service name, for every hsmca.v1 service.
_SERVICER_CLASS_TO_SERVICE: dict[str, str] = {
    f"{service.name}Servicer": service.full_name
    for file in (private_ca_pb2.DESCRIPTOR, kms_pb2.DESCRIPTOR)
    for service in file.services_by_name.values()
}

# Health servicers by server, so graceful_stop can report NOT_SERVING before draining.
_health_by_server: weakref.WeakKeyDictionary[Any, health.HealthServicer] = (
    weakref.WeakKeyDictionary()
)


def service_names(servicer: object) -> list[str]:
    """Return the full hsmca.v1 service names a servicer implements (via its generated bases)."""
    names = [
        _SERVICER_CLASS_TO_SERVICE[cls.__name__]
        for cls in type(servicer).__mro__
        if cls.__name__ in _SERVICER_CLASS_TO_SERVICE
        and cls.__module__.startswith("service.gen.")
    ]
    return list(dict.fromkeys(names))


def build_server(
    servicers: Sequence[tuple[AddServicerFn, object]],
    listen: str,
    *,
    max_workers: int,
    reuse_port: bool,
    perimeter: Perimeter,
    credentials: grpc.ServerCredentials | None = None,
) -> tuple[grpc.Server, int]:
    """Create (not start) a server with servicers, health and reflection; return it and its port.

    ``perimeter`` admits every call (service/auth/perimeter.py); ``credentials`` None serves
    plaintext, which only the loopback-only ``LocalAdmin`` perimeter should be paired with.
    """
    if max_workers < 1:
        raise ValueError(f"max_workers must be >= 1, got {max_workers}")
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="grpc"),
        interceptors=[HsmcaServerInterceptor(perimeter)],
        options=[
            ("grpc.so_reuseport", 1 if reuse_port else 0),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ],
    )

    names: list[str] = []
    for add, servicer in servicers:
        add(servicer, server)
        found = service_names(servicer)
        if not found:
            raise ValueError(
                f"{type(servicer).__name__} does not derive from a generated hsmca.v1 servicer"
            )
        names.extend(found)

    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for name in ("", *names):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    _health_by_server[server] = health_servicer

    reflection.enable_server_reflection(
        (*names, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )

    port: int = (server.add_insecure_port(listen) if credentials is None
                 else server.add_secure_port(listen, credentials))
    if port == 0:
        # grpc reports a failed bind as port 0 rather than raising.
        raise OSError(f"cannot listen on {listen!r}")
    _log.info("gRPC server for %s on %s (port %d, %s)", ", ".join(names), listen, port,
              "plaintext" if credentials is None else "mTLS")
    return server, port


def report_health(server: grpc.Server, service: str, serving: bool) -> None:
    """Set the health status of ``service`` ("" = the whole server) on ``server``."""
    health_servicer = _health_by_server.get(server)
    if health_servicer is not None:
        health_servicer.set(
            service,
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING,
        )


def graceful_stop(server: grpc.Server, grace_seconds: float) -> None:
    """Report NOT_SERVING, refuse new calls, let in-flight ones finish for up to grace_seconds."""
    health_servicer = _health_by_server.get(server)
    if health_servicer is not None:
        # Load balancers watching health stop sending work before the listener closes.
        health_servicer.enter_graceful_shutdown()
    done = server.stop(grace_seconds)
    # stop() cancels whatever is still running at the deadline; wait for that to finish too.
    done.wait(grace_seconds + 5.0)
