"""The server interceptor: authenticate the peer, check its role, map errors, audit refusals.

Every RPC passes here before its servicer runs. The peer is the client certificate BoringSSL
already verified against the deployment CA; it must also be one this deployment issued.
The caller's role is checked against ``authz.METHOD_ROLES``; a refusal, and every domain error
the servicer raises, becomes a status code from ``status.STATUS_CODES`` and an audit event.
Unexpected exceptions reach the client only as INTERNAL with a reference to the server log.
"""

from __future__ import annotations

import functools
import logging
import secrets
from collections.abc import Callable, Iterator
from typing import Any

import grpc
from google.protobuf import descriptor_pool

from fedtune.orchestrator import audit_hook, pki
from fedtune.orchestrator.audit_hook import AuditHook
from fedtune.orchestrator.authz import ENROLMENT_METHODS, Principal, allowed_roles
from fedtune.orchestrator.errors import PermissionDenied, Unauthenticated
from fedtune.orchestrator.status import DOMAIN_ERRORS, status_for
from fedtune.orchestrator.store.repository import Repository

log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=4096)
def _principal_from_pem(pem: bytes) -> Principal:
    return pki.principal_from_certificate(pki.cert_from_pem(pem))


def caller(context: grpc.ServicerContext) -> Principal:
    """The authenticated caller of the current RPC (from its verified client certificate)."""
    certs = context.auth_context().get("x509_pem_cert")
    if not certs:
        raise Unauthenticated(
            "this call needs a client certificate of this deployment: enrol first "
            "('fedtune enrol') and call the mutual-TLS port"
        )
    return _principal_from_pem(certs[0])


class AuthInterceptor(grpc.ServerInterceptor):
    """Authenticates and authorises every call on one port (``enrolment`` or API)."""

    def __init__(
        self,
        repository: Repository | None,
        audit: AuditHook,
        *,
        enrolment_port: bool,
    ) -> None:
        # repository None: a key broker standalone at a provider's site, which cannot see the
        # deployment's issued certificates and trusts every certificate chaining to its CA.
        self._repository = repository
        self._audit = audit
        self._enrolment_port = enrolment_port
        # Certificates already matched against the issued ones, keyed by everything the match
        # covers: a serial alone would let a certificate re-signed with another identity or role
        # under a seen serial skip the check.
        self._known: set[tuple[int, str, str]] = set()

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        """Wrap the method's handler so the checks run in the RPC's own thread, with its context."""
        handler = continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None:
            # An RPC of ours that the other port serves is refused here with a message that says
            # where to call it, and audited; a name no proto declares gets gRPC's own answer.
            return self._not_served(method)
        return _wrap_handler(handler, functools.partial(self._guard, method))

    def _not_served(self, method: str) -> grpc.RpcMethodHandler | None:
        """A handler refusing (UNIMPLEMENTED, audited) an RPC of ours this port does not serve."""
        shape = _method_shape(method) if allowed_roles(method) is not None else None
        if shape is None:
            return None
        short = method.rsplit("/", 1)[-1]
        if self._enrolment_port:
            reason = (
                f"{short} is not served on the enrolment port: call it on the mutual-TLS API "
                "port with the client certificate 'fedtune enrol' gave you"
            )
        elif method in ENROLMENT_METHODS:
            reason = f"{short} is served only on the enrolment port, not on the mutual-TLS API port"
        else:
            reason = f"{short} is not served by this server"

        def refuse(request: Any, context: grpc.ServicerContext) -> Any:
            principal = _optional_principal(context)
            try:
                self._audit.record(
                    audit_hook.event(
                        "refusal",
                        principal,
                        short,
                        method,
                        outcome=audit_hook.REFUSED,
                        reason=reason,
                        details={"code": grpc.StatusCode.UNIMPLEMENTED.name, "error": "NotServed"},
                    )
                )
            except Exception:  # the refusal still goes out; the failure to audit is logged loudly
                log.exception("could not audit the refusal of %s", method)
            context.abort(grpc.StatusCode.UNIMPLEMENTED, reason)

        client_streaming, server_streaming = shape
        make = {
            (False, False): grpc.unary_unary_rpc_method_handler,
            (False, True): grpc.unary_stream_rpc_method_handler,
            (True, False): grpc.stream_unary_rpc_method_handler,
            (True, True): grpc.stream_stream_rpc_method_handler,
        }[(client_streaming, server_streaming)]
        return make(refuse)

    # -- checks ---------------------------------------------------------------------------

    def _authorise(self, method: str, context: grpc.ServicerContext) -> Principal | None:
        short = method.rsplit("/", 1)[-1]
        if (method in ENROLMENT_METHODS) != self._enrolment_port:
            where = "the enrolment port" if self._enrolment_port else "the API port"
            raise PermissionDenied(short, method, f"{short} is not served on {where}")
        roles = allowed_roles(method)
        if roles is None:
            raise PermissionDenied(short, method, "the method is not in the authorisation table")
        if method in ENROLMENT_METHODS:
            return None
        principal = caller(context)
        seen = (principal.serial, principal.fingerprint, principal.role.value)
        if self._repository is not None and seen not in self._known:
            issued = self._repository.get_certificate(principal.serial)
            if (
                issued is None
                or issued.fingerprint != principal.fingerprint
                or issued.role != principal.role.value
            ):
                raise Unauthenticated("the client certificate was not issued by this deployment")
            if issued.revoked_at is not None:
                raise Unauthenticated(
                    f"the client certificate was revoked at {issued.revoked_at.isoformat()}"
                )
            self._known.add(seen)
        if principal.role not in roles:
            allowed = ", ".join(sorted(r.value for r in roles)) or "no remote caller"
            raise PermissionDenied(
                short, method, f"role {principal.role.value} may not call it (allowed: {allowed})"
            )
        return principal

    def _refuse(
        self,
        method: str,
        exc: BaseException,
        principal: Principal | None,
        context: grpc.ServicerContext,
    ) -> None:
        if _aborted(context):
            # A servicer (e.g. the audit log's) aborted with its own status: keep it.
            raise exc
        short = method.rsplit("/", 1)[-1]
        code = status_for(exc) if isinstance(exc, DOMAIN_ERRORS) else None
        if code is None and not context.is_active():
            # The client went away mid-call (a killed uploader): nothing to answer.
            log.info("%s: the client left before the call completed (%s)", method, exc)
            raise exc
        if code is None:
            reference = secrets.token_hex(6)
            log.error("%s failed (reference %s)", method, reference, exc_info=exc)
            context.abort(grpc.StatusCode.INTERNAL, f"internal error (reference {reference})")
        obj = getattr(exc, "object", "") or method
        try:
            self._audit.record(
                audit_hook.event(
                    "refusal",
                    principal,
                    short,
                    obj,
                    outcome=audit_hook.REFUSED,
                    reason=str(exc),
                    details={"code": code.name, "error": type(exc).__name__},
                )
            )
        except Exception:  # the refusal still goes out; the failure to audit is logged loudly
            log.exception("could not audit the refusal of %s", method)
        context.abort(code, str(exc))

    def _guard(
        self,
        method: str,
        behavior: Callable[..., Any],
        request: Any,
        context: grpc.ServicerContext,
        streaming_response: bool,
    ) -> Any:
        principal: Principal | None = None
        try:
            principal = _optional_principal(context)
            principal = self._authorise(method, context)
        except Exception as exc:
            self._refuse(method, exc, principal, context)
        if not streaming_response:
            try:
                return behavior(request, context)
            except Exception as exc:
                self._refuse(method, exc, principal, context)
        return self._guard_stream(method, behavior(request, context), principal, context)

    def _guard_stream(
        self,
        method: str,
        responses: Iterator[Any],
        principal: Principal | None,
        context: grpc.ServicerContext,
    ) -> Iterator[Any]:
        try:
            yield from responses
        except Exception as exc:
            self._refuse(method, exc, principal, context)


@functools.lru_cache(maxsize=256)
def _method_shape(method: str) -> tuple[bool, bool] | None:
    # (client streaming, server streaming) of "/package.Service/Method", from the descriptors
    # the generated stubs registered; None when no imported proto declares it.
    service, _, name = method.lstrip("/").rpartition("/")
    try:
        found = descriptor_pool.Default().FindServiceByName(service).FindMethodByName(name)
    except KeyError:
        return None
    if found is None:
        return None
    return found.client_streaming, found.server_streaming


def _aborted(context: grpc.ServicerContext) -> bool:
    code = context.code() if hasattr(context, "code") else None
    return code is not None and code is not grpc.StatusCode.OK


def _optional_principal(context: grpc.ServicerContext) -> Principal | None:
    # For the audit trail of a refusal: who it was, if a valid certificate says so.
    try:
        return caller(context)
    except Exception:
        return None


def _wrap_handler(
    handler: grpc.RpcMethodHandler,
    guard: Callable[[Callable[..., Any], Any, grpc.ServicerContext, bool], Any],
) -> grpc.RpcMethodHandler:
    streaming = handler.response_streaming
    if handler.unary_unary:
        inner, make = handler.unary_unary, grpc.unary_unary_rpc_method_handler
    elif handler.unary_stream:
        inner, make = handler.unary_stream, grpc.unary_stream_rpc_method_handler
    elif handler.stream_unary:
        inner, make = handler.stream_unary, grpc.stream_unary_rpc_method_handler
    else:
        inner, make = handler.stream_stream, grpc.stream_stream_rpc_method_handler

    def behavior(request: Any, context: grpc.ServicerContext) -> Any:
        return guard(inner, request, context, streaming)

    return make(
        behavior,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )
