"""Thin gRPC servicers: each RPC converts messages and delegates to a domain service."""
