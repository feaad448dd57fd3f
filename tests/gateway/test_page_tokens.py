"""Page tokens are sealed with the deployment's key: edits, forgeries, tokens of another
deployment or another list are refused as INVALID_ARGUMENT on page_token, and so is a
correctly sealed token whose position is out of range (a leaked key must not give a 500)."""

from __future__ import annotations

import base64
import json
from dataclasses import asdict

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.core import paging
from service.core.domain import AuditFilter, OperationFilter
from service.core.errors import ApiError, Code
from service.core.page_tokens import PageTokens, new_key
from service.store.db import Database

KEY = new_key()
TOKENS = PageTokens(KEY)


def _refused(call: object) -> None:
    with pytest.raises(ApiError) as caught:
        call()  # type: ignore[operator]
    assert caught.value.code is Code.INVALID_ARGUMENT
    assert [v.field for v in caught.value.field_violations] == ["page_token"]


def test_a_sealed_token_opens_only_for_its_list_and_query() -> None:
    token = TOKENS.seal("operations", {"namespace": "a"}, {"i": "x"})
    assert TOKENS.open(token, "operations", {"namespace": "a"}) == {"i": "x"}
    _refused(lambda: TOKENS.open(token, "operations", {"namespace": "b"}))
    _refused(lambda: TOKENS.open(token, "audit", {"namespace": "a"}))
    _refused(lambda: PageTokens(new_key()).open(token, "operations", {"namespace": "a"}))


def test_an_edited_payload_with_its_old_mac_is_refused() -> None:
    token = TOKENS.seal("audit", {}, {"i": 5})
    body, mac = token.split(".")
    doc = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    doc["p"]["i"] = 10**40  # the "valid checksum, impossible value" forgery of a bare checksum
    forged = base64.urlsafe_b64encode(json.dumps(doc).encode()).rstrip(b"=").decode() + "." + mac
    _refused(lambda: TOKENS.open(forged, "audit", {}))


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=3000))
def test_no_string_opens_or_breaks_the_signer(text: str) -> None:
    with pytest.raises(ApiError) as caught:
        TOKENS.open(text, "audit", {})
    assert caught.value.code is Code.INVALID_ARGUMENT


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_no_bytes_signed_by_another_key_open(raw: bytes) -> None:
    other = PageTokens(new_key())
    token = other.seal("cluster-list", {"kind": "k", "namespace": "n", "label_selector": ""}, {"c": raw.hex()})
    _refused(lambda: paging.unwrap(TOKENS, token, "k", "n", ""))


def test_cluster_list_tokens_are_bound_to_kind_namespace_and_selector() -> None:
    token = paging.wrap(TOKENS, "k8s-continue", "virtualdisksnapshots", "demo", "app=x")
    assert paging.unwrap(TOKENS, token, "virtualdisksnapshots", "demo", "app=x") == "k8s-continue"
    assert paging.wrap(TOKENS, "", "virtualdisksnapshots", "demo", "") == ""
    for kind, namespace, selector in (("virtualmachinesnapshots", "demo", "app=x"), ("virtualdisksnapshots",
                                      "other", "app=x"), ("virtualdisksnapshots", "demo", "")):
        _refused(lambda: paging.unwrap(TOKENS, token, kind, namespace, selector))  # noqa: B023


POSITIONS = st.one_of(
    st.dictionaries(st.sampled_from(["t", "i", "x"]), st.one_of(
        st.integers(min_value=-(2**200), max_value=2**200), st.floats(allow_nan=False), st.booleans(), st.none(),
        st.text(max_size=80), st.lists(st.integers(), max_size=3),
        st.sampled_from(["9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00", "2026-02-30T00:00:00+00:00",
                         "2026-01-01T00:00:00", "2026-01-01T00:00:00+00:00"]))),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(position=POSITIONS)
async def test_signed_positions_out_of_range_are_400_never_500(database: Database,
                                                              position: dict[str, object]) -> None:
    """A correctly sealed token (as with a leaked key) still cannot reach the SQL with an
    impossible value: a page, or 400 on page_token."""
    operations = database.page_tokens.seal("operations", asdict(OperationFilter()), position)
    audit = database.page_tokens.seal("audit", asdict(AuditFilter()), position)
    for attempt in (database.operations.list_page(OperationFilter(), 5, operations),
                    database.audit.list_page(AuditFilter(), 5, audit)):
        try:
            await attempt
        except ApiError as exc:
            assert exc.code is Code.INVALID_ARGUMENT
            assert [v.field for v in exc.field_violations] == ["page_token"]
