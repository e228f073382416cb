"""The page loop of one read (docs/exchange-protocol.md, "Paging").

A read returns every page or fails: a page with `@adminapi.errors`, a truncation warning on
the last page, a nextLink to another host or one that repeats raises `CollectionFailed`; it
never returns a shorter list. Exchange puts the truncation warning ("There are more results
available than are currently displayed…") on every page that has a nextLink; as in the module,
it is ignored there, because the next page follows. Only on a page without a nextLink does it
mean the result was cut. One request is in flight at a time; while a page is parsed, the next one is
already being fetched from the nextLink found in its raw bytes (a guess checked like any
nextLink and confirmed against the parsed document before its result is used).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from operator import itemgetter
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx

from auditor.core.errors import CollectionFailed
from auditor.exchange.route import Route, origin
from auditor.exchange.transport import CallState, Transport

__all__ = ["Pager", "page_records", "parse_json"]

log = logging.getLogger(__name__)

_TRUNCATED = "more results available"


class Pager:
    """Follows `@odata.nextLink` through `transport`, checking every page; nextLinks must stay
    on the route's (possibly redirected) host."""

    def __init__(self, transport: Transport, route: Route, *, max_pages: int) -> None:
        self._transport = transport
        self._route = route
        self.max_pages = max_pages

    def read(
        self,
        state: CallState,
        url: str,
        body: bytes,
        headers: dict[str, str],
        sink: Callable[[list[dict[str, Any]]], None],
        warnings: list[str],
    ) -> tuple[int, int]:
        """Hand every page's records to `sink`; (records, pages). Non-fatal warnings are
        appended to `warnings`."""
        cmdlet = state.cmdlet
        post = self._transport.post
        count = 0
        seen_links: set[str] = set()
        pages = 1
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="exo-page") as pool:
            current = pool.submit(post, state, url, body, headers)
            while True:
                response = current.result()
                rid = response.headers.get("request-id", "none")
                guess = self._guess_next(response.content, seen_links)
                ahead = None
                if guess is not None and pages < self.max_pages:
                    sent = threading.Event()
                    ahead = pool.submit(post, state, guess, body, headers, sent)
                    ahead.add_done_callback(_setter(sent))
                    # Let the request reach the wire before parsing holds the GIL for ms.
                    sent.wait(timeout=5.0)
                document = parse_json(cmdlet, response, rid)
                link = document.get("@odata.nextLink")
                page = page_records(cmdlet, document, rid, warnings, more=link is not None)
                count += len(page)
                sink(page)
                del page
                if link is None:
                    break
                url = self._next_url(cmdlet, link, rid, seen_links)
                pages += 1
                if pages > self.max_pages:
                    raise CollectionFailed(
                        f"{cmdlet}: HTTP 200, request-id {rid}: more than {self.max_pages} "
                        "pages; the read was stopped and is incomplete"
                    )
                if ahead is None or guess != url:
                    ahead = pool.submit(post, state, url, body, headers)
                current = ahead
        return count, pages

    def _guess_next(self, content: bytes, seen: set[str]) -> str | None:
        """The nextLink of a raw page, found without parsing it; None if absent or unsafe."""
        at = content.rfind(b'"@odata.nextLink"')
        if at < 0:
            return None
        colon = content.find(b":", at + 17)
        try:
            link, _ = json.JSONDecoder().raw_decode(content[colon + 1 :].decode().lstrip())
        except (ValueError, UnicodeDecodeError):
            return None
        if not isinstance(link, str):
            return None
        url = urljoin(self._route.endpoint, link)
        if origin(url) != self._route.origin or url in seen:
            return None
        return url

    def _next_url(self, cmdlet: str, link: Any, rid: str, seen: set[str]) -> str:
        where = f"{cmdlet}: HTTP 200, request-id {rid}"
        if not isinstance(link, str) or not link:
            raise CollectionFailed(f"{where}: @odata.nextLink is not a URL")
        url = urljoin(self._route.endpoint, link)
        if origin(url) != self._route.origin:
            raise CollectionFailed(
                f"{where}: @odata.nextLink points at another host ({urlsplit(url).netloc}); "
                "refused, so the read is incomplete"
            )
        if url in seen:
            raise CollectionFailed(f"{where}: @odata.nextLink repeats; the read is incomplete")
        seen.add(url)
        return url


def parse_json(cmdlet: str, response: httpx.Response, rid: str) -> dict[str, Any]:
    try:
        document = json.loads(response.content)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CollectionFailed(
            f"{cmdlet}: HTTP {response.status_code}, request-id {rid}: the response is not "
            f"valid JSON ({exc})"
        ) from exc
    if not isinstance(document, dict):
        raise CollectionFailed(
            f"{cmdlet}: HTTP {response.status_code}, request-id {rid}: the response is "
            "not a JSON object"
        )
    return document


def page_records(
    cmdlet: str, document: dict[str, Any], rid: str, warnings: list[str], *, more: bool = False
) -> list[dict[str, Any]]:
    """The records of one page, annotations stripped. `more`: a nextLink follows this page.

    A `Set-*` answer of `"value": null` (or no value) with only warnings is a success with no
    records; a `Get-*` page must carry a `value` array."""
    where = f"{cmdlet}: HTTP 200, request-id {rid}"
    errors = document.get("@adminapi.errors")
    if errors:
        raise CollectionFailed(
            f"{where}: the response carries @adminapi.errors: "
            f"{json.dumps(errors, default=str)[:400]}"
        )
    for warning in document.get("@adminapi.warnings") or ():
        text = str(warning)
        if _TRUNCATED in text.lower():
            if more:
                continue  # the pagination warning: the next page follows
            raise CollectionFailed(
                f"{where}: the result was truncated: {text} (no further page: the read is "
                "incomplete)"
            )
        warnings.append(text)
        log.info("%s: warning: %s", where, text)
    if document.get("value") is None and not cmdlet.lower().startswith("get-"):
        return []
    value = document.get("value")
    if not isinstance(value, list):
        raise CollectionFailed(f"{where}: the response has no 'value' array")
    for index, record in enumerate(value):
        if not isinstance(record, dict):
            raise CollectionFailed(f"{where}: value[{index}] is not an object")
    strip = _Stripper()
    return [strip(record) for record in value]


class _Stripper:
    """Drops annotation keys (`Guid@odata.type`, ...) from records; null stays distinct from false.

    Records of one listing share their key layout, so the kept keys are worked out once per
    layout and copied with C-level helpers: a compact new dict per record (deleting keys in
    place would keep the larger table alive for the whole run)."""

    def __init__(self) -> None:
        self._layouts: dict[tuple[str, ...], tuple[tuple[str, ...], Callable[[Any], Any]]] = {}

    def __call__(self, record: dict[str, Any]) -> dict[str, Any]:
        layout = tuple(record)
        known = self._layouts.get(layout)
        if known is None:
            keep = tuple(key for key in layout if "@" not in key)
            known = (keep, itemgetter(*keep) if len(keep) > 1 else _single(keep))
            if len(self._layouts) < 64:
                self._layouts[layout] = known
        keep, getter = known
        out = dict(zip(keep, getter(record), strict=True))
        if dict in map(type, out.values()):  # nested objects are rare: strip them too
            for key, value in out.items():
                if isinstance(value, dict):
                    out[key] = self(value)
        return out


def _single(keep: tuple[str, ...]) -> Callable[[Any], Any]:
    if not keep:
        return lambda record: ()
    key = keep[0]
    return lambda record: (record[key],)


def _setter(event: threading.Event) -> Callable[[Any], None]:
    return lambda _: event.set()
