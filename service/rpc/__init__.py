"""gRPC transport plumbing shared by every servicer: interceptor, server builder, client helpers.

No domain logic lives here; servicers translate proto <-> domain and raise
service.errors.HsmcaError subclasses, which the interceptor maps to gRPC statuses.
"""
