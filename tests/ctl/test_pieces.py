"""The pure pieces: ages, the SSE parser, problem lines, --rename, plain tables."""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from service.ctl import sse
from service.ctl.commands.restore_clone import rename
from service.ctl.errors import ApiError
from service.ctl.parser import seconds
from service.ctl.render import age, plain_table

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.mark.parametrize(("ago", "shown"), [(timedelta(seconds=5), "5s"), (timedelta(minutes=3, seconds=59), "3m"),
                                            (timedelta(hours=2, minutes=59), "2h"), (timedelta(days=4), "4d"),
                                            (timedelta(days=800), "2y"), (timedelta(seconds=-0.5), "0s")])
def test_ages_read_like_kubectl(ago: timedelta, shown: str) -> None:
    assert age((NOW - ago).isoformat().replace("+00:00", "Z"), NOW) == shown


def test_age_without_a_time() -> None:
    assert age(None, NOW) == "<unknown>" and age("garbage", NOW) == "<unknown>"


async def test_sse_parser_follows_the_event_stream_format() -> None:
    async def lines() -> AsyncIterator[str]:
        for line in [": keepalive", "", "id: 3", "event: operation", 'data: {"a":', "data: 1}", "",
                     "event: no-data", "", "data:plain", ""]:
            yield line

    events = [e async for e in sse.parse(lines())]
    assert events == [sse.Event("operation", '{"a":\n1}', "3"), sse.Event("message", "plain", "3")]


def test_a_problem_is_one_line_and_one_per_violation() -> None:
    error = ApiError(412, {"detail": "VM is\nRunning", "code": "FAILED_PRECONDITION", "reason": "VM_NOT_STOPPED",
                           "requestId": "r1", "fieldViolations": [{"field": "name", "description": "bad"}],
                           "preconditionViolations": [{"type": "T", "subject": "vms/x", "description": "stop"}]})
    assert str(error) == "VM is Running (412 FAILED_PRECONDITION VM_NOT_STOPPED; request r1)"
    assert error.details == ["name: bad", "T vms/x: stop"]
    assert str(ApiError(502, {})) == "the gateway answered HTTP 502 (502)"


def test_rename_reads_kind_old_new() -> None:
    assert rename("VirtualDisk/root=data") == {"from": {"kind": "VirtualDisk", "name": "root"}, "to": "data"}
    assert rename("root=data") == {"from": {"name": "root"}, "to": "data"}
    for bad in ("root", "=x", "root=", "/root=x"):
        with pytest.raises(argparse.ArgumentTypeError):
            rename(bad)


def test_durations_and_tables() -> None:
    assert [seconds(v) for v in ("90", "90s", "1.5m", "1h", "0")] == [90, 90, 90, 3600, 0]
    assert plain_table(["NAME", "AGE"], [["a-long-name", "5s"], ["b", ""]]) == [
        "NAME          AGE", "a-long-name   5s", "b"]
