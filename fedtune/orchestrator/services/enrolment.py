"""The Enrolment servicer (served on the enrolment port only)."""

from __future__ import annotations

import datetime as dt

import grpc

from fedtune._proto import enrolment_pb2, enrolment_pb2_grpc
from fedtune.orchestrator.enrolment import Enroller


class EnrolmentServicer(enrolment_pb2_grpc.EnrolmentServicer):
    """Enrol, delegated to Enroller."""

    def __init__(self, enroller: Enroller, ca_pem: bytes, api_port: int) -> None:
        self._enroller = enroller
        self._ca_pem = ca_pem
        self._api_port = api_port

    def Enrol(  # noqa: N802
        self, request: enrolment_pb2.EnrolRequest, context: grpc.ServicerContext
    ) -> enrolment_pb2.EnrolResponse:
        """Redeem a token for a client certificate."""
        result = self._enroller.enrol(
            request.request.canonical, request.request.signature, now=dt.datetime.now(dt.UTC)
        )
        return enrolment_pb2.EnrolResponse(
            certificate_pem=result.certificate_pem.decode(),
            ca_certificate_pem=self._ca_pem.decode(),
            role=result.role.value,
            name=result.name,
            fingerprint=result.fingerprint,
            api_port=self._api_port,
        )
