"""Error answers of the emulated endpoint: the JSON error shape, RBAC refusals, fault replies.

The shape is the one live captures show (docs/exchange-protocol.md, "Errors"): the cmdlet's
message sits in `details[0].message` as `ErrId|Type|text` (ErrId often empty) and in
`innererror.internalexception`; the outer `message` of a 400 is "Invalid Operation". An RBAC 403
is not JSON at all: a run of NUL bytes labelled `Content-Encoding: gzip`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from devkit.emulator.faults import Fault

__all__ = [
    "CmdletError",
    "PAGINATION_EXPIRED",
    "Reply",
    "bad_parameter",
    "error_body",
    "fault_reply",
    "forbidden",
    "invalid_filter",
    "not_modified",
    "pagination_expired",
    "spoil",
]

PAGINATION_EXPIRED = "Expired or Invalid pagination request. Default Expiry time is 00:30:00"
_NUL_BODY = 4096  # "thousands of NUL bytes"


@dataclass
class Reply:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None  # a body sent as-is (malformed JSON, NUL bytes, empty)
    drop: bool = False  # cut the body in the middle and close the connection
    filtered: bool = False  # a page of a `-Filter` listing (the server adds `filter_latency`)

    def payload(self) -> bytes:
        if self.raw is not None:
            return self.raw
        return json.dumps(self.body, separators=(",", ":")).encode()


class CmdletError(Exception):
    def __init__(
        self, status: int, code: str, message: str, exc_type: str, err_id: str = ""
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.exc_type = exc_type
        self.err_id = err_id

    def reply(self) -> Reply:
        outer = "Invalid Operation" if self.status == 400 else self.message
        return Reply(
            self.status,
            error_body(self.code, outer, self.message, self.exc_type, self.err_id),
        )


def error_body(
    code: str, message: str, cmdlet_message: str, exc_type: str, err_id: str = ""
) -> dict[str, Any]:
    """The error shape; the cmdlet's own message sits in details (`ErrId|Type|text`) and in
    innererror."""
    return {
        "error": {
            "code": code,
            "message": message,
            "details": [
                {"code": "Client", "target": "", "message": f"{err_id}|{exc_type}|{cmdlet_message}"}
            ],
            "innererror": {
                "message": cmdlet_message,
                "type": exc_type,
                "internalexception": {"message": cmdlet_message, "type": exc_type},
            },
        }
    }


def bad_parameter(name: str) -> CmdletError:
    return CmdletError(
        400,
        "BadRequest",
        f"A parameter cannot be found that matches parameter name '{name}'.",
        "System.Management.Automation.ParameterBindingException",
    )


def invalid_filter(where: str) -> CmdletError:
    """What a `-Filter` the service cannot read gets (docs/exchange-protocol.md, "Sharded
    reads"): the parameter binding error naming the filter and the position."""
    return CmdletError(
        400,
        "BadRequest",
        'Cannot bind parameter \'Filter\' to the target. Exception setting "Filter": "Invalid '
        "filter syntax. For a description of the filter parameter syntax see the command help."
        f'\n{where}"',
        "System.Management.Automation.ParameterBindingException",
    )


def pagination_expired() -> CmdletError:
    """What a replayed nextLink gets when it expired or its session does not match."""
    return CmdletError(
        400,
        "BadRequest",
        PAGINATION_EXPIRED,
        "Microsoft.Exchange.Admin.OData.Core.ODataServiceException",
    )


def forbidden() -> Reply:
    """The RBAC refusal of a cmdlet the identity's roles lack: 403, NUL bytes 'gzip'."""
    return Reply(
        403,
        raw=b"\x00" * _NUL_BODY,
        headers={"Content-Encoding": "gzip", "Content-Type": "application/octet-stream"},
    )


def not_modified(identity: str) -> str:
    return f"The command completed successfully but no settings of '{identity}' have been modified."


def fault_reply(fault: Fault, cmdlet: str) -> Reply:
    if fault.kind == "throttle":
        headers = {} if fault.retry_after is None else {"Retry-After": fault.retry_after}
        body = error_body(
            "TooManyRequests",
            "Too many requests.",
            "The request was throttled. Retry after the interval in Retry-After.",
            "Microsoft.Exchange.Admin.OData.Core.ThrottlingException",
        )
        return Reply(429, body, headers)
    if fault.kind == "unavailable":
        body = error_body(
            "ServiceUnavailable",
            "The service is temporarily unavailable.",
            "The server is busy; try again later.",
            "Microsoft.Exchange.Admin.OData.Core.ServiceUnavailableException",
        )
        return Reply(fault.status, body)
    if fault.kind == "transient":
        return Reply(
            500,
            error_body(
                "InternalServerError",
                "An error occurred while processing this request.",
                "Active Directory server is not available (DC overloaded). Try again later.",
                "Microsoft.Exchange.Data.Directory.DCOverloadedException",
            ),
        )
    if fault.kind == "claims":
        challenge = (
            'Bearer realm="", error="insufficient_claims", '
            'claims="eyJhY2Nlc3NfdG9rZW4iOnsibmJmIjp7ImVzc2VudGlhbCI6dHJ1ZX19fQ=="'
        )
        return Reply(
            401,
            error_body("Unauthorized", "Claims challenge.", "insufficient_claims", "Unauthorized"),
            {"WWW-Authenticate": challenge},
        )
    if fault.kind == "forbidden":
        return forbidden()
    if fault.kind == "role_parameters":
        message = (
            "The following parameters aren't present in the role definition for the current "
            "user: SmtpClientAuthenticationDisabled."
        )
        return Reply(
            403,
            error_body(
                "Forbidden",
                "Invalid Operation",
                message,
                "Microsoft.Exchange.Management.PSDirectInvoke.DirectInvokeCmdletAccessDeniedException",
            ),
        )
    message = f"User is not allowed to call {cmdlet}."  # deny
    return Reply(
        401,
        {
            "error": {
                "code": "Unauthorized",
                "message": message,
                "innererror": {
                    "message": message,
                    "type": "Microsoft.Exchange.Admin.OData.Core.ODataServiceException",
                },
            }
        },
    )


def spoil(reply: Reply, fault: Fault) -> Reply:
    if reply.status != 200:
        return reply
    if fault.kind == "drop":
        reply.drop = True
    elif fault.kind == "malformed":
        reply.raw = reply.payload()[:-7] + b"<html>"
    else:  # adminapi_error: a part of the page, and the error inside the 200
        body = dict(reply.body)
        body["value"] = body["value"][: len(body["value"]) // 2]
        body["adminapi.errors@odata.type"] = "#Collection(Exchange.ErrorRecord)"
        body["@adminapi.errors"] = [
            {
                "Exception": "Microsoft.Exchange.Data.StorageTransientException",
                "Message": "The mailbox database is temporarily unavailable.",
            }
        ]
        reply.body = body
    return reply
