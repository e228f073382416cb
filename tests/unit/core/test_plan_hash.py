"""The plan hash is the sha256 of one canonical JSON document, whatever the fast path writes."""

from __future__ import annotations

import hashlib
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from auditor.core.proposals import Role, Target, canonical_items, plan_hash

TEXT = st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x1F6FF), max_size=12)


def reference(targets: list[Target]) -> str:
    """The definition: json.dumps of the whole list of hashed fields, sorted and compact."""
    document = [t.hashed() for t in targets]
    text = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


targets = st.builds(
    Target,
    key=TEXT,
    role=st.sampled_from(list(Role)),
    display=TEXT,
    before=st.sampled_from([True, False, None]),
    after=st.sampled_from([True, False, None]),
    step=st.integers(min_value=1, max_value=3),
    reason=TEXT,
    guid=st.none() | TEXT,
    upn=st.none() | TEXT,
    address=st.none() | TEXT,
    mailbox_type=st.none() | TEXT,
)


@settings(max_examples=300, deadline=None)
@given(st.lists(targets, max_size=6))
def test_plan_hash_is_the_hash_of_the_canonical_document(chosen: list[Target]) -> None:
    assert plan_hash(chosen) == reference(chosen)


def test_chunks_join_into_one_document_and_odd_text_takes_the_json_path() -> None:
    many = [
        Target(
            f"k{n}",
            Role.REVOKE,
            f"m{n}\x7f" if n % 7 == 0 else f"m{n}é" if n % 5 == 0 else f"m{n}",
            None,
            None,
            3,
            "r",
        )
        for n in range(2_345)
    ]
    assert plan_hash(many) == reference(many)
    assert plan_hash([]) == reference([])
    odd = [{"a": "\x7f"}, {"b": "é"}]
    assert canonical_items(odd) == b'{"a":"\\u007f"},{"b":"\\u00e9"}'
