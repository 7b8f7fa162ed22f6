"""The two database edges of a live call: the snapshot taken at stream start, and the final write.

Everything the call world needs is loaded here once into plain frozen dataclasses: the call's
own row in one locked round trip, its agent and credentials from this process's configuration
cache (``voiceagents.configcache``; a read on a miss). Nothing in ``session.py`` reads settings
or the database afterwards.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from django.db import transaction
from django.utils import timezone
from django.utils.module_loading import import_string

from .. import configcache, postcall
from ..audio.formats import AudioFormat
from ..conf import get_setting
from ..exceptions import ConfigurationError, WebhookValidationFailure
from ..models import (
    FINAL_STATUSES,
    Agent,
    Call,
    CallEvent,
    CallEventKind,
    CallStatus,
    Credential,
    Direction,
)
from ..providers import providers
from ..providers.base import ProviderConfig, StageConfig
from ..providers.specs import ProviderSpec, ServiceSpec
from ..services import restore_recording, store_recording
from ..templating import caller_number, fill_placeholders
from ..tools import ToolContext, agent_tools
from . import rowsql, streamtokens, transcripts

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CallContext:
    """The per-call snapshot handed to ``CallSession``."""

    call_id: str
    carrier: str
    provider_id: str
    provider_config: ProviderConfig
    first_message: str
    record: bool
    max_duration_s: int
    mark_interval_ms: int
    pacer_lead_ms: int
    recording_dir: str
    #: A barge-in with no caller words this soon was noise: the agent resumes (0: off).
    false_interruption_window_ms: int = 0
    #: Search caller audio for the agent's own echo up to this delay (0: no echo suppression).
    echo_max_delay_ms: int = 0
    #: E.164 numbers the agent may transfer calls to (the ``transfer_call`` tool).
    transfer_allowlist: tuple[str, ...] = ()
    #: The registered tools the agent may use (``voiceagents.tools``), by name, and what they
    #: are told about the call.
    tools: tuple[str, ...] = ()
    tool_context: ToolContext | None = None
    #: The provider spec's provisioner (dotted path), run by ``provision`` before the provider
    #: opens; '' when it has none.
    provisioner: str = ""
    agent_id: int | None = None
    #: A call we placed: the other party is the callee (its hang-up is ``callee_hangup``).
    outbound: bool = False
    #: Outbound calls with answering-machine detection: the first message waits for the verdict
    #: (``amd.AmdGate``) at most ``amd_timeout_s``; ``answered_by`` is the verdict if it came first.
    amd: bool = False
    amd_timeout_s: float = 30.0
    answered_by: str = ""
    #: ``voicemail`` (say ``voicemail_message``, then end) or ``hangup``, when a machine answers.
    machine_action: str = "hangup"
    voicemail_message: str = ""


class CallRejected(Exception):
    """The stream may not run (call over, agent gone, mode unavailable).

    ``reason`` is the call's ``end_reason``; ``detail`` says it to the operator (``error``).
    """

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(detail or reason)
        self.reason = reason
        self.detail = detail


def start_call(
    call_id, *, stream_id: str, carrier_format: AudioFormat, carrier_call_id: str | None = None
) -> CallContext:
    """Spend the stream token, mark the call in progress and snapshot its configuration.

    Raises WebhookValidationFailure for a replayed token and CallRejected when the call cannot
    run; the caller closes the stream before any provider socket opens. A rejected call is
    recorded as failed with its reason in the same transaction: nobody will talk to the caller.
    """
    rejected = None
    with transaction.atomic():
        # One locked read of the call's own columns, and the token spent in the same write as the
        # call's start, by statements built once (``rowsql``). Its agent and credentials come
        # from the configuration cache.
        call = rowsql.read(Call, call_id, _START_FIELDS, lock=True)
        if call is None or not streamtokens.spend(call):
            raise WebhookValidationFailure("stream token already used", call_id=call_id)
        if not carrier_call_id or carrier_call_id != call.carrier_call_id:
            # A valid token replayed on another call's stream, or a start that names no call:
            # the token is bound to the carrier call it was minted for.
            raise WebhookValidationFailure(
                "stream does not belong to the carrier call of its token", call_id=call_id
            )
        try:
            setup = agent_setup(call.agent_id) if call.agent_id is not None else None
            agent, spec, config = _runnable(call, setup, carrier_format)
        except CallRejected as err:
            rejected = err
            spent = ["stream_token_used_at"]
            if not call.stream_id:
                # The refused stream is the call's (its token is spent): the carrier's code may
                # still hang the call up through it (Telnyx).
                call.stream_id = stream_id[:128]
                spent.append("stream_id")
            call.save(update_fields=spent)
            fail_before_start(call.pk, err.reason, err.detail)
        else:
            now = timezone.now()
            previous = call.status
            call.status = CallStatus.IN_PROGRESS
            call.answered_at = call.answered_at or now
            call.stream_id = stream_id[:128]
            call.provider = agent.provider
            rowsql.update(call, _STARTED_FIELDS)
            rowsql.insert(
                CallEvent(
                    call_id=call.pk,
                    kind=CallEventKind.STATUS,
                    at_ms=0,
                    data={
                        "from": previous,
                        "to": CallStatus.IN_PROGRESS,
                        "reason": "stream_started",
                    },
                )
            )
    if rejected is not None:
        raise rejected
    return CallContext(
        call_id=str(call.pk),
        carrier=call.carrier,
        provider_id=agent.provider,
        provider_config=config,
        first_message=config.first_message,
        record=agent.record_calls,
        max_duration_s=agent.max_call_duration,
        mark_interval_ms=int(get_setting("MARK_INTERVAL_MS", default=100, cast=int)),
        pacer_lead_ms=int(get_setting("PACER_LEAD_MS", default=80, cast=int)),
        recording_dir=str(get_setting("RECORDING_TMP_DIR", default="") or _default_tmp()),
        false_interruption_window_ms=int(get_setting("FALSE_INTERRUPTION_WINDOW_MS", cast=int)),
        echo_max_delay_ms=(
            int(get_setting("ECHO_MAX_DELAY_MS", cast=int))
            if get_setting("ECHO_SUPPRESSION", cast=bool)
            else 0
        ),
        transfer_allowlist=tuple(agent.transfer_allowlist or ()),
        tools=tuple(agent.tools or ()),
        tool_context=ToolContext(
            call_id=str(call.pk),
            agent=agent.slug,
            caller_number=call.from_number,
            called_number=call.to_number,
            variables=dict(config.variables),
        ),
        provisioner=spec.provisioner,
        agent_id=agent.pk,
        outbound=call.direction == Direction.OUTBOUND,
        **_outbound_context(call, agent),
    )


#: The columns of the call that ``start_call`` reads or writes (its agent comes from the cache).
_START_FIELDS = (
    "agent_id",
    "status",
    "stream_token_used_at",
    "carrier",
    "carrier_call_id",
    "stream_id",
    "answered_at",
    "provider",
    "direction",
    "from_number",
    "to_number",
    "outbound_options",
    "answered_by",
)
#: The columns a started call's write sets.
_STARTED_FIELDS = ("stream_token_used_at", "status", "answered_at", "stream_id", "provider")


@dataclass(frozen=True)
class AgentSetup:
    """An agent as calls use it: the row, and the credential each of its services takes.

    Built once per agent and kept in ``configcache`` (pickled: each call unpickles its own copy).
    The secrets stay encrypted; each call decrypts the ones it uses.
    """

    agent: Agent
    #: ``Agent.credential_for(role)`` of each role in ``Agent.key_roles()`` (None: none).
    credentials: dict[str, Credential | None]

    def credential_for(self, role: str) -> Credential | None:
        if role in self.credentials:
            return self.credentials[role]
        return self.agent.credential_for(role)  # a role key_roles() did not foresee


def agent_setup(agent_id) -> AgentSetup | None:
    """The agent ``agent_id`` with its services' credentials, or None if it was deleted; a
    private copy from this process's configuration cache when it holds it."""

    def load() -> AgentSetup | None:
        agent = (
            Agent.objects.select_related(
                "credential", "stt_credential", "reply_credential", "tts_credential"
            )
            .filter(pk=agent_id)
            .first()
        )
        if agent is None:
            return None
        return AgentSetup(
            agent, {role: agent.credential_for(role) for role, _ in agent.key_roles()}
        )

    return configcache.models(("agent_setup", agent_id), load)


def _outbound_context(call: Call, agent: Agent) -> dict:
    """The answering-machine part of the snapshot (outbound calls placed with AMD only)."""
    options = call.outbound_options or {}
    if call.direction != Direction.OUTBOUND or not options.get("amd"):
        return {}
    from ..outbound import amd_timeout_s

    voicemail = agent.rendered_voicemail_message(_call_variables(call)).strip()
    action = options.get("machine_action") or "hangup"
    return {
        "amd": True,
        "amd_timeout_s": amd_timeout_s(),
        "answered_by": call.answered_by,
        "machine_action": action if voicemail else "hangup",
        "voicemail_message": voicemail,
    }


def answered_by(call_id) -> str:
    """The AMD verdict stored on the call ('' when none came yet)."""
    return Call.objects.filter(pk=call_id).values_list("answered_by", flat=True).first() or ""


async def provision(context: CallContext) -> dict:
    """Await the provider spec's provisioner for the call's agent (see ``ProviderSpec``); returns
    the option overrides for this call. Raises ``ProvisioningError`` when the vendor refuses."""
    provisioner = import_string(context.provisioner)
    overrides = await provisioner(context.agent_id, context.provider_config.carrier_format)
    return dict(overrides or {})


def _runnable(
    call: Call, setup: AgentSetup | None, carrier_format: AudioFormat
) -> tuple[Agent, ProviderSpec, ProviderConfig]:
    """The call's agent (``setup``), its provider's spec and configuration; CallRejected if it
    cannot run."""
    if call.status in FINAL_STATUSES:
        raise CallRejected("call_already_ended", f"The call had already ended ({call.status}).")
    agent = setup.agent if setup is not None else None
    if agent is None:
        raise CallRejected("no_agent", "The call's agent was deleted before the call connected.")
    if not agent.enabled:
        raise CallRejected(
            "agent_disabled", f"The agent {agent.name!r} was disabled before the call connected."
        )
    spec = providers.find(agent.provider)
    if spec is None or not spec.runtime:
        raise CallRejected(
            "provider_not_available",
            f"The agent's voice architecture {agent.provider!r} cannot take calls on this "
            "server: it is not registered, or it has no runtime.",
        )
    return agent, spec, _provider_config(call, setup, spec, carrier_format)


def _default_tmp() -> str:
    import tempfile

    return tempfile.gettempdir()


def _call_variables(call: Call) -> dict:
    """The call's own variables. The caller chose the caller ID (any string can be sent as
    one): it is sanitised, and quoted where a prompt inserts it (``CallerValue``)."""
    own = {"caller_number": caller_number(call.from_number), "called_number": call.to_number}
    # An outbound call's own variables (place_call's), under the call's.
    return {**((call.outbound_options or {}).get("variables") or {}), **own}


def _provider_config(
    call: Call, setup: AgentSetup, spec: ProviderSpec, carrier_format: AudioFormat
) -> ProviderConfig:
    """The provider's configuration, read from its spec, the agent and its credentials."""
    agent = setup.agent
    api_key, base_url = _service_account(setup, "provider", spec) if spec.vendor else ("", "")
    variables = _call_variables(call)
    return ProviderConfig(
        call_id=str(call.pk),
        api_key=api_key,
        base_url=base_url,
        model=agent.effective_model(),
        voice=agent.effective_voice(),
        instructions=agent.rendered_system_prompt(variables),
        language=agent.language,
        options=dict(agent.provider_options or {}),
        carrier_format=carrier_format,
        connect_timeout=float(get_setting("CONNECT_TIMEOUT", cast=float)),
        stages={stage: _stage_config(setup, stage, variables) for stage in spec.stages},
        first_message=_first_message(call, agent, variables),
        tools=agent_tools(agent.transfer_allowlist or (), agent.tools or ()),
        variables={**(agent.variables or {}), **variables},
        http_timeout=float(get_setting("HTTP_TIMEOUT", cast=float)),
        agent=agent.slug,
    )


def _first_message(call: Call, agent: Agent, variables: dict) -> str:
    """The agent's first message, or the one its outbound call was placed with."""
    override = (call.outbound_options or {}).get("first_message")
    if override is None:
        return agent.rendered_first_message(variables)
    return fill_placeholders(str(override), {**(agent.variables or {}), **variables})


def _stage_config(setup: AgentSetup, stage: str, variables: dict) -> StageConfig:
    """One pipeline stage's service; the agent's ``<stage>_model``/``_voice``/``_language``/
    ``_prompt`` fields (or a ``<stage>_model`` provider option), where it has them, override the
    stage spec's defaults."""
    agent = setup.agent
    if stage == "reply" and agent.reply_handler:
        return StageConfig(id="", handler=agent.reply_handler)
    spec = agent.stage_spec(stage)
    if spec is None:
        raise CallRejected(
            "stage_not_configured",
            f"The agent {agent.name!r} has no {stage} service chosen: its pipeline cannot run.",
        )
    # A stage that runs here (no vendor, no key) has no account to look up.
    api_key, base_url = _service_account(setup, stage, spec) if spec.vendor else ("", "")
    return StageConfig(
        id=spec.id,
        api_key=api_key,
        base_url=base_url,
        model=spec.resolve_model(
            getattr(agent, f"{stage}_model", "")
            or (agent.provider_options or {}).get(f"{stage}_model", "")
        ),
        voice=spec.resolve_voice(getattr(agent, f"{stage}_voice", "")),
        language=getattr(agent, f"{stage}_language", "") or agent.language,
        # The agent's own variables too, as in its system prompt and first message.
        instructions=fill_placeholders(
            getattr(agent, f"{stage}_prompt", ""), {**(agent.variables or {}), **variables}
        ),
    )


def _service_account(setup: AgentSetup, role: str, spec: ServiceSpec) -> tuple[str, str]:
    """The API key and URL of ``spec`` for the agent's ``role``.

    Key: the credential (chosen, else the vendor's default), else ``<VENDOR>_API_KEY``.
    URL: the credential's base URL override, else the ``<ID>_URL`` setting, else the spec's.
    """
    agent = setup.agent
    credential = setup.credential_for(role)
    api_key = (
        credential.secret if credential else get_setting("API_KEY", vendor=spec.vendor, default="")
    )
    if not api_key:
        raise ConfigurationError(
            f"Agent {agent.slug!r} has no {spec.vendor} credential for {spec.name}: choose one in "
            f"the admin, mark one as default, or set VOICEAGENTS['{spec.vendor.upper()}_API_KEY']"
        )
    return str(api_key), spec.resolve_url(credential.api_base_url if credential else "")


def fail_before_start(call_id, reason: str, error: str = "") -> bool:
    """Record that a call failed before its agent was connected (refused, misconfigured); logged.

    False, and nothing changed, when the call had ended already.
    """
    return _fail_live_call(Call.objects.filter(pk=call_id), reason, error)


def fail_refused_stream(
    call_id, token: str, carrier_call_id: str, reason: str, error: str = ""
) -> bool:
    """A stream whose ``start`` was refused although it carried the call's valid token: nobody
    will talk to the caller, so the call fails with ``reason``.

    Nothing changes for a forged or expired token, for another carrier call, or for a call
    whose stream already started (a replayed ``start`` must not end the real conversation).
    """
    try:
        streamtokens.check(call_id, token)
    except WebhookValidationFailure:
        return False
    calls = Call.objects.filter(
        pk=call_id, carrier_call_id=carrier_call_id, stream_token_used_at__isnull=True
    )
    return _fail_live_call(calls, reason, error)


def _fail_live_call(calls, reason: str, error: str) -> bool:
    with transaction.atomic():
        call = calls.select_for_update().first()
        if call is None or call.status in FINAL_STATUSES:
            return False
        previous = call.status
        call.status = CallStatus.FAILED
        call.ended_at = timezone.now()
        if call.answered_at is not None:
            call.duration = call.ended_at - call.answered_at
        call.end_reason = reason[:100]
        call.error = error
        call.save(update_fields=["status", "ended_at", "duration", "end_reason", "error"])
        CallEvent.objects.create(
            call=call,
            kind=CallEventKind.STATUS,
            data={"from": previous, "to": CallStatus.FAILED, "reason": reason},
        )
    logger.warning("call %s failed before its agent was connected: %s (%s)", call.pk, reason, error)
    return True


def finish_call(
    call_id,
    *,
    failed: bool,
    end_reason: str,
    error: str,
    metrics: dict,
    recording_path: str | None,
    recording_ms: float | None,
    provider_session_id: str = "",
    transcript: transcripts.Rows | None = None,
) -> tuple[str, str]:
    """Write the end of the call: status, times, metrics and the recording; queue post-call work.

    A carrier status callback may have marked the call final already (it can arrive before the
    stream's ``stop``); its status stands, and so do the end reason and error it recorded
    (Telnyx's ``call.hangup`` maps ``hangup_cause``); the rest is still written. Returns the
    call's final status and end reason. ``transcript``: the call's last transcript rows and
    timeline events, written in the same transaction (``finish_call_with_transcript``).
    """
    now = timezone.now()
    moved = written = False
    try:
        with transaction.atomic():
            # Only the columns it reads or writes, locked, by a statement built once (``rowsql``).
            call = rowsql.read(Call, call_id, _END_READ_FIELDS, lock=True)
            if call is None:
                raise Call.DoesNotExist(f"call {call_id} is gone")
            previous = call.status
            if call.status not in FINAL_STATUSES:
                call.status = CallStatus.FAILED if failed else CallStatus.COMPLETED
                call.ended_at = now
                if call.answered_at:
                    call.duration = now - call.answered_at
            if previous not in FINAL_STATUSES or not call.end_reason:
                call.end_reason = end_reason[:100]
            call.error = error or call.error
            call.metrics = {**(call.metrics or {}), **metrics}
            call.provider_session_id = provider_session_id[:128] or call.provider_session_id
            events = []
            if call.status != previous:
                events.append(
                    (
                        CallEventKind.STATUS,
                        None,
                        {"from": previous, "to": call.status, "reason": end_reason},
                    )
                )
            # One INSERT for the status event and the timeline's last events. Before the recording
            # moves into storage (which a rollback does not undo; the except below puts it back):
            # if these rows are refused, the end is written again without them.
            _, turns, timeline = transcript or (None, [], [])
            transcripts.insert([(call.pk, turns, [*timeline, *events])])
            # Only the end's own columns: a whole-row save would also write back what this read
            # (wide JSON and text columns) and cost more to build.
            fields = [*_END_FIELDS]
            if recording_path and _attach_recording(call, recording_path, recording_ms):
                moved = True
                fields += ["recording", "recording_duration"]
            rowsql.update(call, fields)
            # Batched with the other ends of this process: one Celery message per window.
            transaction.on_commit(lambda: postcall.queue_finalize(call.pk))
            written = True  # only the commit is left, which may fail unacknowledged
    except BaseException:
        if moved:
            # The row does not point at the moved recording (or may not: a failed commit):
            # put it back where recovery looks, rather than leave it in storage unnamed.
            restore_recording(call, recording_path, rolled_back=not written)
        raise
    return call.status, call.end_reason


def finish_call_with_transcript(
    transcript: transcripts.Rows | None, call_id, **end
) -> tuple[tuple[str, str], Exception | None]:
    """``finish_call(call_id, **end)`` with the call's last transcript rows (``transcript``, may be
    None) in the same transaction; returns its result and what became of the rows (None:
    written, else the error that kept them out).

    If that transaction fails for another reason than the connection, the rows may be at fault:
    they are written alone, then the end alone, so that bad rows cannot keep a call from ending.
    """
    if transcript is None:
        return finish_call(call_id, **end), None
    try:
        return finish_call(call_id, transcript=transcript, **end), None
    except transcripts.CONNECTION_ERRORS:
        raise
    except Exception:  # noqa: BLE001 - perhaps the rows: the two writes apart tell
        (error,) = transcripts.write_rows([], [transcript])
        return finish_call(call_id, **end), error


#: The columns ``finish_call`` writes (and the recording's two, when there is one).
_END_FIELDS = (
    "status",
    "ended_at",
    "duration",
    "end_reason",
    "error",
    "metrics",
    "provider_session_id",
)
#: What ``finish_call`` reads: those, and ``created_at`` (it names the recording's folder).
_END_READ_FIELDS = (
    *_END_FIELDS,
    "answered_at",
    "created_at",
    "recording",
    "recording_duration",
)


def _attach_recording(call: Call, path: str, duration_ms: float | None) -> bool:
    """Store the recording at ``path`` on ``call`` (not saved yet); False if it could not be."""
    try:
        store_recording(call, path)
    except OSError:
        logger.exception("call %s: cannot store the recording %s", call.pk, path)
        return False
    call.recording_duration = timedelta(milliseconds=duration_ms or 0)
    return True
