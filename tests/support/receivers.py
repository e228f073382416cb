"""Local HTTP receivers for alert tests: real servers on 127.0.0.1 that record what is posted.

`ReceiverPool` starts `devkit.receiver.Receiver`s on demand and stops them all at the end; the
`receivers` fixture in conftest.py hands one to a test:

    def test_x(receivers):
        teams = receivers.start("teams", default=Reply(202))
        ... post to teams.url ...
        assert teams.requests[0].json()["type"] == "message"
"""

from __future__ import annotations

from pathlib import Path

from devkit.receiver import Receiver, Recorded, Reply

__all__ = ["Receiver", "ReceiverPool", "Recorded", "Reply"]


class ReceiverPool:
    def __init__(self, out_dir: Path | None = None) -> None:
        self.out_dir = out_dir
        self.started: list[Receiver] = []

    def start(self, name: str, *, default: Reply | None = None) -> Receiver:
        receiver = Receiver(name, default=default, out_dir=self.out_dir).start()
        self.started.append(receiver)
        return receiver

    def stop_all(self) -> None:
        for receiver in self.started:
            receiver.stop()
        self.started.clear()
