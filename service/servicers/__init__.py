"""gRPC servicers: translate hsmca.v1 requests to domain calls and results back."""
