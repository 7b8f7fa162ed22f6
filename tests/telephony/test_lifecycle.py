"""The carrier-neutral call rules every carrier's webhooks share (``telephony.carriers.lifecycle``).

The carriers' own webhook tests drive these through real signed webhooks; here each rule is pinned
on its own, on unsaved rows, including the orders of arrival a carrier's tests cannot easily stage.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from telephony.carriers import lifecycle
from voiceagents.models import Agent, Call, CallStatus, PhoneNumber

T0 = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)


def _number(*, enabled=True, agent_enabled: bool | None = True) -> PhoneNumber:
    agent = None if agent_enabled is None else Agent(name="A", slug="a", enabled=agent_enabled)
    return PhoneNumber(number="+15550001111", enabled=enabled, agent=agent)


def _same(number) -> bool:
    return True


@pytest.mark.parametrize(
    ("number", "same_account", "reason"),
    [
        (None, _same, "unknown_number"),
        (_number(), lambda n: False, "account_mismatch"),
        # The account is checked first: another account's call learns nothing about our number.
        (_number(enabled=False, agent_enabled=False), lambda n: False, "account_mismatch"),
        (_number(enabled=False), _same, "number_disabled"),
        (_number(enabled=False, agent_enabled=None), _same, "number_disabled"),
        (_number(agent_enabled=None), _same, "no_agent"),
        (_number(agent_enabled=False), _same, "agent_disabled"),
        (_number(), _same, ""),
    ],
)
def test_refusal_names_the_first_reason_no_agent_can_take_the_call(number, same_account, reason):
    assert lifecycle.refusal(number, same_account) == reason
    assert (reason in lifecycle.REFUSALS) == bool(reason)


def test_can_connect_only_a_live_call_with_an_enabled_agent():
    agent = Agent(name="A", slug="a", enabled=True)
    assert lifecycle.can_connect(Call(status=CallStatus.RINGING, agent=agent))
    assert not lifecycle.can_connect(None)
    assert not lifecycle.can_connect(Call(status=CallStatus.RINGING, agent=None))
    assert not lifecycle.can_connect(Call(status=CallStatus.COMPLETED, agent=agent))
    agent.enabled = False
    assert not lifecycle.can_connect(Call(status=CallStatus.RINGING, agent=agent))


def test_rank_puts_every_final_status_above_every_live_one():
    live = [CallStatus.QUEUED, CallStatus.RINGING, CallStatus.IN_PROGRESS]
    assert [lifecycle.rank(s) for s in live] == sorted(lifecycle.rank(s) for s in live)
    for final in (CallStatus.COMPLETED, CallStatus.BUSY, CallStatus.FAILED, CallStatus.CANCELED):
        assert lifecycle.rank(final) > lifecycle.rank(CallStatus.IN_PROGRESS)


def test_a_late_ringing_never_moves_an_answered_call_back():
    call = Call(status=CallStatus.RINGING)
    assert lifecycle.advance(call, CallStatus.IN_PROGRESS, T0) == ["answered_at", "status"]

    assert lifecycle.advance(call, CallStatus.RINGING, T0 + timedelta(seconds=1)) == []
    assert call.status == CallStatus.IN_PROGRESS
    assert call.answered_at == T0


def test_the_earliest_answer_wins_when_reports_arrive_out_of_order():
    call = Call(status=CallStatus.RINGING)
    lifecycle.advance(call, CallStatus.IN_PROGRESS, T0 + timedelta(seconds=5))
    lifecycle.advance(call, CallStatus.IN_PROGRESS, T0)
    lifecycle.advance(call, CallStatus.IN_PROGRESS, T0 + timedelta(seconds=9))
    assert call.answered_at == T0


def test_a_final_status_never_changes_and_sets_the_end_once():
    call = Call(status=CallStatus.IN_PROGRESS, answered_at=T0)
    end = T0 + timedelta(seconds=42)
    lifecycle.advance(call, CallStatus.COMPLETED, end)
    assert (call.status, call.ended_at, call.duration) == (
        CallStatus.COMPLETED,
        end,
        timedelta(seconds=42),
    )

    assert lifecycle.advance(call, CallStatus.BUSY, end + timedelta(seconds=1)) == []
    assert lifecycle.advance(call, CallStatus.IN_PROGRESS, end + timedelta(seconds=2)) == []
    assert (call.status, call.ended_at, call.answered_at) == (CallStatus.COMPLETED, end, T0)


def test_the_carriers_duration_wins_even_when_it_is_zero():
    call = Call(status=CallStatus.IN_PROGRESS, answered_at=T0)
    lifecycle.advance(call, CallStatus.COMPLETED, T0 + timedelta(seconds=3), duration=timedelta(0))
    assert call.duration == timedelta(0)


def test_an_unanswered_call_ends_without_a_duration():
    call = Call(status=CallStatus.RINGING)
    assert lifecycle.advance(call, CallStatus.NO_ANSWER, T0) == ["ended_at", "status"]
    assert call.duration is None and call.answered_at is None


def test_an_ended_call_lacking_its_end_time_gains_it_and_keeps_its_status():
    call = Call(status=CallStatus.FAILED, answered_at=T0, end_reason="provider_error")
    changed = lifecycle.advance(call, CallStatus.COMPLETED, T0 + timedelta(seconds=7))
    assert changed == ["ended_at", "duration"]
    assert call.status == CallStatus.FAILED
    assert call.duration == timedelta(seconds=7)


def test_fail_ends_a_live_call_but_leaves_an_ended_one_alone():
    live = Call(status=CallStatus.IN_PROGRESS)
    assert lifecycle.fail(live, "stream_failed", "no media", T0)
    assert (live.status, live.end_reason, live.error, live.ended_at) == (
        CallStatus.FAILED,
        "stream_failed",
        "no media",
        T0,
    )

    ended = Call(status=CallStatus.COMPLETED, end_reason="caller_hangup", ended_at=T0)
    assert not lifecycle.fail(ended, "carrier_error", "refused", T0 + timedelta(seconds=1))
    assert (ended.status, ended.end_reason, ended.error) == (
        CallStatus.COMPLETED,
        "caller_hangup",
        "",
    )
