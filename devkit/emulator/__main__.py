"""`python -m devkit.emulator`: serve a generated or file-described tenant until interrupted.

Prints one line with the base URL, tenant and token, then serves until Ctrl-C (or --duration).
"""

from __future__ import annotations

import argparse
import sys
import time

from devkit.emulator.server import Emulator, load_tenant
from devkit.tenantgen import generate_tenant


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devkit.emulator", description=__doc__)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--generate", type=int, metavar="N", help="generate N mailboxes")
    source.add_argument("--tenant-file", metavar="FILE", help="tenant JSON (snapshot-shaped)")
    parser.add_argument("--seed", type=int, default=1, help="generator seed (default 1)")
    parser.add_argument("--org-disabled", action="store_true", help="organisation blocks SMTP AUTH")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free)")
    parser.add_argument("--token", default="emulator-token", help="bearer token to accept")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added per request")
    parser.add_argument("--duration", type=float, help="stop after this many seconds")
    real = parser.add_argument_group(
        "behaviour", "where the real service varies (defaults: the harshest evidenced form)"
    )
    real.add_argument(
        "--no-page-warnings",
        action="store_true",
        help="no truncation warning on pages that have a nextLink",
    )
    real.add_argument(
        "--unbound-links",
        action="store_true",
        help="nextLinks work without the connection-id of the request that opened the listing",
    )
    real.add_argument(
        "--link-ttl", type=float, default=1800.0, help="seconds a nextLink lives (1800)"
    )
    real.add_argument(
        "--deny",
        action="append",
        default=[],
        metavar="CMDLET",
        help="answer this cmdlet with the RBAC 403 (NUL bytes labelled gzip); repeatable",
    )
    real.add_argument(
        "--redirect",
        action="append",
        default=[],
        metavar="FROM=TO",
        help="answer requests for host FROM with a 302 to host TO (same port); repeatable",
    )
    real.add_argument(
        "--replication-delay",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="reads show the value from before a write for this long",
    )
    real.add_argument(
        "--rate-limit",
        metavar="N/SECONDS",
        help="a request budget announced in Rate-Limit-* headers and enforced with 429",
    )
    args = parser.parse_args(argv)
    redirects = {}
    for item in args.redirect:
        source, sep, target = item.partition("=")
        if not sep or not source or not target:
            parser.error(f"--redirect takes FROM=TO, got {item!r}")
        redirects[source] = target
    rate_limit = None
    if args.rate_limit:
        count, sep, window = args.rate_limit.partition("/")
        try:
            rate_limit = (int(count), float(window))
        except ValueError:
            parser.error(f"--rate-limit takes N/SECONDS, got {args.rate_limit!r}")
        if not sep or rate_limit[0] < 1 or rate_limit[1] <= 0:
            parser.error(f"--rate-limit takes N/SECONDS, got {args.rate_limit!r}")
    if args.generate is not None:
        if args.generate < 0:
            parser.error("--generate must not be negative")
        tenant = generate_tenant(args.generate, seed=args.seed, org_disabled=args.org_disabled)
    else:
        try:
            tenant = load_tenant(args.tenant_file)
        except (OSError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    with Emulator(
        tenant,
        token=args.token,
        latency=args.latency,
        port=args.port,
        page_warnings=not args.no_page_warnings,
        bind_links=not args.unbound_links,
        link_ttl=args.link_ttl,
        denied=args.deny,
        redirects=redirects,
        replication_delay=args.replication_delay,
        rate_limit=rate_limit,
    ) as emu:
        print(
            f"emulator listening base_url={emu.base_url} tenant={emu.domain} "
            f"tenant_id={emu.tenant_id} token={args.token}",
            flush=True,
        )
        deadline = None if args.duration is None else time.monotonic() + args.duration
        try:
            while deadline is None or time.monotonic() < deadline:
                time.sleep(0.2)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
