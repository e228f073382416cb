"""Benchmark of the Exchange collection (issue 3): collect a snapshot from the emulator.

Starts the emulator in a child process (so its memory is not counted) with N mailboxes
(default 100,000) and L seconds of latency per page (default 0.05), then collects
Get-TransportConfig, Get-CASMailbox and Get-Mailbox with the real client over loopback HTTP and
prints wall time, pages, bytes received, peak memory of the collecting process, the fetch floor
(pages x latency) and bytes per mailbox, projected vs an unprojected Get-CASMailbox page from
the same emulator. Targets: wall <= 1.15 x floor; peak < 250 MB; projected CAS bytes per mailbox
<= 1/5 of unprojected.

    .venv/bin/python benchmarks/bench_collect.py [--mailboxes N] [--latency SECONDS]
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from auditor.exchange.client import ExchangeClient  # noqa: E402
from auditor.exchange.collect import collect_snapshot  # noqa: E402
from auditor.identity.tokens import StaticToken  # noqa: E402

TOKEN = "bench-token"  # noqa: S105 - the local emulator's token


class Counting(httpx.BaseTransport):
    """Counts requests and response body bytes per cmdlet."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.requests: dict[str, int] = {}
        self.bytes: dict[str, int] = {}

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        cmdlet = request.headers.get("X-CmdletName", "?")
        self.requests[cmdlet] = self.requests.get(cmdlet, 0) + 1
        response = self.inner.handle_request(request)
        inner_stream = response.stream
        counts = self.bytes

        class Stream(httpx.SyncByteStream):
            def __iter__(self) -> Iterator[bytes]:
                for chunk in inner_stream:  # type: ignore[union-attr]
                    counts[cmdlet] = counts.get(cmdlet, 0) + len(chunk)
                    yield chunk

            def close(self) -> None:
                inner_stream.close()  # type: ignore[union-attr]

        return httpx.Response(
            response.status_code,
            headers=response.headers,
            stream=Stream(),
            extensions=response.extensions,
        )

    def close(self) -> None:
        self.inner.close()


def start_emulator(mailboxes: int, latency: float) -> tuple[subprocess.Popen[str], str, str]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "devkit.emulator",
            "--generate",
            str(mailboxes),
            "--latency",
            str(latency),
            "--token",
            TOKEN,
            "--duration",
            "900",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()  # blocks until generated and listening (or exited)
    fields = dict(part.split("=", 1) for part in line.split() if "=" in part)
    if "base_url" not in fields:
        process.kill()
        raise SystemExit(f"emulator did not start: {line!r}")
    return process, fields["base_url"], fields["tenant"]


def unprojected_bytes_per_mailbox(base_url: str, tenant: str) -> float:
    """One full page (1000 mailboxes) of Get-CASMailbox without $select, as Exchange sends it."""
    response = httpx.post(
        f"{base_url}/adminapi/beta/{tenant}/InvokeCommand",
        json={"CmdletInput": {"CmdletName": "Get-CASMailbox", "Parameters": {"ResultSize": 1000}}},
        headers={"Authorization": f"Bearer {TOKEN}", "Prefer": "odata.maxpagesize=1000"},
        timeout=60,
    )
    response.raise_for_status()
    return len(response.content) / len(response.json()["value"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mailboxes", type=int, default=100_000)
    parser.add_argument("--latency", type=float, default=0.05)
    args = parser.parse_args()
    process, base_url, tenant = start_emulator(args.mailboxes, args.latency)
    try:
        counting = Counting()
        with httpx.Client(transport=counting, timeout=120) as http:
            client = ExchangeClient(
                base_url=base_url, tenant=tenant, tokens=StaticToken(TOKEN), http=http
            )
            started = time.perf_counter()
            document = collect_snapshot(client, tenant=tenant, now=datetime.now(UTC))
            wall = time.perf_counter() - started
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        unprojected = unprojected_bytes_per_mailbox(base_url, tenant)
    finally:
        process.terminate()
        process.wait(timeout=10)
    if document["errors"]:
        print(f"collection failed: {document['errors']}")
        return 1
    assert len(document["cas_mailboxes"]) == args.mailboxes
    assert len(document["mailboxes"]) == args.mailboxes
    pages = sum(counting.requests.values())
    received = sum(counting.bytes.values())
    floor = pages * args.latency
    cas_per_mailbox = counting.bytes["Get-CASMailbox"] / args.mailboxes
    ratio = cas_per_mailbox / unprojected
    print(
        f"mailboxes            {args.mailboxes:,} (latency {args.latency * 1000:.0f} ms per page)"
    )
    for cmdlet in sorted(counting.requests):
        print(
            f"  {cmdlet:<20} {counting.requests[cmdlet]:>5} pages "
            f"{counting.bytes.get(cmdlet, 0) / 1e6:8.2f} MB"
        )
    print(f"wall                 {wall:.2f} s")
    print(f"pages                {pages}")
    print(f"fetch floor          {floor:.2f} s (pages x latency)")
    print(f"wall / floor         {wall / floor:.3f}   target <= 1.15" if floor else "")
    print(
        f"bytes received       {received / 1e6:.2f} MB "
        f"({received / args.mailboxes:.0f} B/mailbox, all three reads)"
    )
    print(f"peak memory (RSS)    {peak:.0f} MiB   target < 250 MB")
    print(
        f"Get-CASMailbox bytes {cas_per_mailbox:.0f} B/mailbox projected "
        f"vs {unprojected:.0f} B/mailbox unprojected"
    )
    print(f"projected/unprojected {ratio:.3f}  target <= 0.200")
    met = (not floor or wall <= 1.15 * floor) and peak < 250 * 1e6 / 2**20 and ratio <= 0.2
    print("targets met" if met else "TARGETS MISSED")
    return 0 if met else 1


if __name__ == "__main__":
    raise SystemExit(main())
