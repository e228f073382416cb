"""`remediations`, `approve ID --as TOKEN`, `status ID`: approved remediation from the shell.

Local mode (default) works on `AUDITOR_STORAGE` directly, through the same service the HTTP
functions use, so an approval is authenticated exactly as over HTTP (the token is validated
against `APPROVER_*`). With `--url` (or `REMEDIATION_PUBLIC_URL`) the commands call a deployed
Function App instead.

Exit codes: 0 done (applied, or approved and queued), 1 partially applied or failed,
2 bad input, refused or not authorised (the message says why).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
from collections import Counter
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx

from auditor.app import wiring
from auditor.app.settings import Settings
from auditor.cli.options import EXIT_FAIL, EXIT_INPUT, EXIT_OK, read_token
from auditor.core import routes
from auditor.core.allowlist import read_allowlist
from auditor.core.errors import InputError, Refused
from auditor.core.model import Allowlist
from auditor.core.policy import evaluate
from auditor.core.proposals import Kind
from auditor.core.snapshot import read_snapshot
from auditor.remediation.plan import plan
from auditor.reports.text import table as text_table
from auditor.storage.proposal_store import ProposalStore
from auditor.web.api import WebRequest, WebResponse
from auditor.web.runtime import build_service


def register(sub: Any) -> None:
    listing: argparse.ArgumentParser = sub.add_parser(
        "remediations",
        help="list remediation proposals (or plan new ones from a snapshot)",
        description="List open remediation proposals stored in AUDITOR_STORAGE, newest first "
        "(--all: every proposal). "
        "With --plan-from, evaluate a snapshot, plan proposals and store them.",
    )
    listing.add_argument("--plan-from", type=Path, help="snapshot JSON file to plan from")
    listing.add_argument("--allowlist", type=Path, help="allowlist for --plan-from")
    listing.add_argument("--today", help="evaluate as of this UTC date (YYYY-MM-DD)")
    listing.add_argument("--grants", action="store_true", help="also plan allowlist grants")
    listing.add_argument(
        "--all",
        dest="everything",
        action="store_true",
        help="also list decided, executed and superseded proposals (default: open ones)",
    )
    listing.add_argument("--format", choices=("text", "json"), default="text")
    listing.set_defaults(func=run_list)

    approve: argparse.ArgumentParser = sub.add_parser(
        "approve",
        help="approve a remediation proposal (needs an approver token)",
        description="Approve proposal ID as the principal of an Entra access token. Without "
        "--plan-hash the plan is shown with its hash: approve what you saw.",
    )
    approve.add_argument("id", help="proposal id")
    approve.add_argument(
        "--as", dest="token", required=True, help="access token, @file, a file path, or - (stdin)"
    )
    approve.add_argument("--plan-hash", help="the plan hash you reviewed")
    approve.add_argument("--targets", help="comma-separated target keys (default: all)")
    approve.add_argument("--dry-run", action="store_true", help="show what would change")
    approve.add_argument(
        "--all", action="store_true", help="without --plan-hash, list every target (default: 20)"
    )
    approve.add_argument(
        "--url", help="Function App base URL (default: local, or REMEDIATION_PUBLIC_URL)"
    )
    approve.set_defaults(func=run_approve)

    status: argparse.ArgumentParser = sub.add_parser(
        "status",
        help="show a remediation proposal: state, approver, each target's result, audit trail",
    )
    status.add_argument("id", help="proposal id")
    status.add_argument("--as", dest="token", help="access token (needed with --url)")
    status.add_argument("--url", help="Function App base URL (default: local storage)")
    status.add_argument("--format", choices=("text", "json"), default="text")
    status.set_defaults(func=run_status)


def _store(settings: Settings) -> ProposalStore:
    store = wiring.proposal_store(settings)
    store.create_tables()
    return store


def run_list(args: argparse.Namespace, env: dict[str, str] | None = None) -> int:
    settings = Settings.from_env(env)
    store = _store(settings)
    if args.plan_from:
        today = date.fromisoformat(args.today) if args.today else datetime.now(UTC).date()
        snapshot = read_snapshot(args.plan_from)
        allowlist = read_allowlist(args.allowlist) if args.allowlist else Allowlist()
        now = datetime.now(UTC)
        evaluation = evaluate(snapshot, allowlist, today, evaluated_at=now)
        digest = hashlib.sha256(Path(args.plan_from).read_bytes()).hexdigest()[:12]
        proposals = plan(
            evaluation,
            run_id=f"snapshot-{digest}",
            created_at=now,
            force_true=settings.remediation_force_true,
            expiry_days=settings.remediation_expiry_days,
            include_grants=args.grants,
        )
        kinds = (Kind.REVOCATION, Kind.GRANT) if args.grants else (Kind.REVOCATION,)
        ids = store.sync(proposals, run_id=f"snapshot-{digest}", now=now, kinds=kinds)
        for proposal, stored_as in zip(proposals, ids, strict=True):
            print(f"stored  {stored_as}  {proposal.title}")  # new, or confirmed if identical
        if not proposals:
            print("nothing to propose")
    records = store.recent(everything=args.everything)
    if args.format == "json":
        print(json.dumps([r.to_json() for r in records], indent=1))
        return EXIT_OK
    rows = [
        [
            r.id,
            r.kind.value,
            r.state.value,
            f"{r.created_at:%Y-%m-%d}",
            f"{r.expires_at:%Y-%m-%d}",
            r.title,
        ]
        for r in records
    ]
    if records:
        columns = ("ID", "KIND", "STATE", "CREATED", "EXPIRES", "TITLE")
        for line in text_table(columns, rows, terminal_width() + 2):
            print(line)
    else:
        print("no remediation proposals" if args.everything else "no open remediation proposals")
    return EXIT_OK


def _remote(method: str, url: str, token: str | None, body: dict[str, Any] | None) -> WebResponse:
    headers = {"Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        with httpx.Client(timeout=httpx.Timeout(240.0, connect=15.0)) as http:
            response = http.request(method, url, headers=headers, json=body)
    except httpx.HTTPError as exc:
        raise InputError(url, f"cannot reach the Function App: {exc}") from exc
    return WebResponse(
        response.status_code, response.text, response.headers.get("content-type", "")
    )


def _print(response: WebResponse) -> dict[str, Any]:
    try:
        document: dict[str, Any] = json.loads(response.body)
    except ValueError:
        print(response.body)
        return {}
    if "error" in document:
        print(f"refused ({response.status}, {document['error']}): {document.get('message', '')}")
    return document


SHOWN_TARGETS = 20


def _name(target: dict[str, Any]) -> str:
    """A target's label, never "None": its display name, else its key."""
    return str(target.get("display") or target.get("key") or "(unnamed)")


def _show_breaking(document: dict[str, Any]) -> None:
    """First and apart: who will notice (sign-ins in the usage window), in a plan or dry run."""
    breaking = document.get("will_break") or []
    if breaking:
        print(f"will break ({len(breaking)}): used SMTP AUTH in the sign-in window")
        for t in breaking:
            print(f"  {_name(t)}: {t['detail']}")


def _show_plan(document: dict[str, Any], *, show_all: bool = False) -> None:
    print(
        f"{document['title']}\nproposal {document['id']} ({document['kind']}), "
        f"state {document['state']}, expires {document['expires_at']}"
    )
    _show_breaking(document)
    targets: list[dict[str, Any]] = document["targets"]
    roles = Counter(str(t.get("role") or "target") for t in targets)
    print(
        f"{len(targets)} target(s): "
        + ", ".join(f"{n} {role}" for role, n in sorted(roles.items()))
    )
    by_type = document.get("by_type") or {}
    if by_type:
        print("by type: " + ", ".join(f"{n} {name}" for name, n in by_type.items()))
    shown = targets if show_all else targets[:SHOWN_TARGETS]
    columns = ("MAILBOX", "ROLE", "CHANGE", "KEY")
    rows = [
        [
            _name(t),
            str(t.get("role") or ""),
            f"{json.dumps(t.get('before'))} -> {json.dumps(t.get('after'))}",
            str(t.get("key") or ""),
        ]
        for t in shown
    ]
    for line in text_table(columns, rows, terminal_width()):
        print("  " + line)
    if len(shown) < len(targets):
        print(f"  … and {len(targets) - len(shown)} more (--all lists every target)")
    print(f"plan hash {document['plan_hash']}")


def terminal_width() -> int:
    return shutil.get_terminal_size((100, 24)).columns - 2


def run_approve(args: argparse.Namespace, env: dict[str, str] | None = None) -> int:
    settings = Settings.from_env(env)
    token = read_token(args.token)
    base = (args.url or settings.remediation_public_url or "").rstrip("/")
    targets = [t.strip() for t in args.targets.split(",")] if args.targets else None
    path = routes.remediation_path(args.id)
    if not args.plan_hash:
        document = _status_document(args.id, base, token, settings)
        if not document or "error" in document:
            return EXIT_INPUT
        _show_plan(document, show_all=args.all)
        print("re-run with --plan-hash to approve exactly this plan")
        return EXIT_INPUT
    body: dict[str, Any] = {"plan_hash": args.plan_hash, "dry_run": args.dry_run}
    if targets is not None:
        body["targets"] = targets
    if base:
        response = _remote("POST", f"{base}{path}/approve", token, body)
    else:
        service = build_service(settings)
        response = service.approve(
            WebRequest(
                "POST",
                f"http://localhost{path}/approve",
                {"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
                json.dumps(body).encode(),
                {"id": args.id},
            )
        )
        if response.enqueue is not None:
            service.run_queued(response.enqueue)  # no queue locally: run it now
            response = service.status(
                WebRequest(
                    "GET",
                    f"http://localhost{path}/status",
                    {"Authorization": f"Bearer {token}"},
                    b"",
                    {"id": args.id},
                )
            )
    document = _print(response)
    if response.status >= 400:
        return EXIT_INPUT
    if args.dry_run:
        _show_breaking(document)
        rows = [
            [_name(x), str(x.get("action") or ""), str(x.get("detail") or "")]
            for x in document.get("targets", [])
        ]
        for line in text_table(("MAILBOX", "WOULD", "DETAIL"), rows, terminal_width()):
            print("  " + line)
        return EXIT_OK
    _report(document)
    return EXIT_OK if document.get("state") in ("applied", "approved", "running") else EXIT_FAIL


def _report(document: dict[str, Any]) -> None:
    by = document.get("approved_by") or {}
    print(
        f"{document.get('id')}: {document.get('state')}"
        + (f" (approved by {by.get('name')} {by.get('object_id')})" if by else "")
    )
    if document.get("outcome"):
        print(f"outcome: {document['outcome']}")
    rows = [
        [_name(t), str(t.get("result") or ""), str(t.get("detail") or "")]
        for t in document.get("targets", [])
    ]
    if rows:
        for line in text_table(("MAILBOX", "RESULT", "DETAIL"), rows, terminal_width()):
            print("  " + line)
    if document.get("status_url"):
        print(f"status: {document['status_url']}")


def _status_document(
    proposal_id: str, base: str, token: str | None, settings: Settings
) -> dict[str, Any]:
    if base:
        if not token:
            raise InputError("--as", "a token is required with --url")
        response = _remote(
            "GET", base + routes.remediation_path(proposal_id, "status"), token, None
        )
        return _print(response)
    store = _store(settings)
    try:
        record = store.get(proposal_id)
    except Refused as exc:
        print(f"refused ({exc.code}): {exc}")
        return {"error": exc.code, "message": str(exc)}
    document = record.to_json()
    document["trail"] = [
        {"at": e.at, "event": e.event, "actor": e.actor, "detail": e.detail}
        for e in store.trail(proposal_id)
    ]
    return document


def run_status(args: argparse.Namespace, env: dict[str, str] | None = None) -> int:
    settings = Settings.from_env(env)
    base = (args.url or "").rstrip("/")
    token = read_token(args.token) if args.token else None
    document = _status_document(args.id, base, token, settings)
    if not document or "error" in document:
        return EXIT_INPUT
    if args.format == "json":
        print(json.dumps(document, indent=1))
    else:
        _report(document)
        trail = [
            [str(e.get("at") or ""), str(e.get("event") or ""), str(e.get("actor") or ""),
             str(e.get("detail") or "")]
            for e in document.get("trail", [])
        ]  # fmt: skip
        if trail:
            for line in text_table(("AT", "EVENT", "ACTOR", "DETAIL"), trail, terminal_width()):
                print("  " + line)
    state = document.get("state")
    return EXIT_FAIL if state in ("partially_applied", "failed") else EXIT_OK
