"""A faithful local emulator of the Exchange Online admin REST endpoint (docs/exchange-protocol.md).

`Emulator` serves a tenant over real HTTP on 127.0.0.1 for tests and the demo;
`python -m devkit.emulator` runs it from the command line. It implements the protocol as
public sources show it, by default in its harshest evidenced form (see `behaviour`), including
its failure modes (switchable through `Emulator.faults`), and knows nothing about the auditor's
client.
"""

from __future__ import annotations

from devkit.emulator.behaviour import Behaviour
from devkit.emulator.endpoint import MORE_RESULTS
from devkit.emulator.errors import PAGINATION_EXPIRED
from devkit.emulator.faults import FAULT_KINDS, Fault, Faults
from devkit.emulator.server import Emulator, RequestRecord, load_tenant

__all__ = [
    "Behaviour",
    "Emulator",
    "Fault",
    "Faults",
    "FAULT_KINDS",
    "MORE_RESULTS",
    "PAGINATION_EXPIRED",
    "RequestRecord",
    "load_tenant",
]
