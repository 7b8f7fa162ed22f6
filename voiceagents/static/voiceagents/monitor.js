// The live monitor (voiceagents.monitor): keeps the served page current from the monitor socket.
//
// The socket sends JSON events: "ready"; "started", "line", "ended" and "skipped" with a call_id
// (a line also carries the call's quality figures so far).
// A call the page does not know yet (a new call, or one whose start was skipped) is fetched from
// the state URL, which answers with the page's own shapes. The state is fetched again after the
// socket reconnects and now and then, since events are best effort (a channel layer that is down
// loses them). "Hang up" POSTs its form and leaves the call's end to the socket.
"use strict";

(function () {
  const RESYNC_MS = 30000;
  const RETRY_MIN_MS = 1000;
  const RETRY_MAX_MS = 30000;
  // Close codes of voiceagents.monitor.consumer.
  const REFUSALS = {
    4001: "Live updates refused: only staff members who may view calls can watch them.",
    4029: "Live updates refused: you have too many monitor pages open. Close one and reload.",
  };

  let root, list, connection, noCalls, retryMs = RETRY_MIN_MS;
  const fetching = new Set();
  // Events of calls being fetched, applied once their card is drawn.
  const waiting = new Map();

  function text(tag, className, value) {
    const element = document.createElement(tag);
    if (className) element.className = className;
    element.textContent = value;
    return element;
  }

  function offsetLabel(ms) {
    if (ms === null || ms === undefined) return "";
    const seconds = Math.floor(ms / 1000);
    return `${Math.floor(seconds / 60)}:${String(seconds % 60).padStart(2, "0")}`;
  }

  function setConnection(state, message) {
    connection.dataset.state = state;
    connection.textContent = message;
  }

  function callElement(callId) {
    return list.querySelector(`li.call[data-call-id="${CSS.escape(callId)}"]`);
  }

  function showEmpty() {
    noCalls.hidden = list.querySelector("li.call") !== null;
  }

  // -- drawing ------------------------------------------------------------------------------

  function drawCall(call) {
    let element = callElement(call.call_id);
    if (!element) {
      element = document.createElement("li");
      element.className = "call";
      element.dataset.callId = call.call_id;
      const header = document.createElement("header");
      const who = text("a", "who", `${call.from_number || "unknown"} → ${call.to_number || "unknown"}`);
      who.href = call.url;
      header.append(
        who,
        text("span", "agent", call.agent || "no agent"),
        text("span", "carrier", `${call.carrier}, ${call.direction.toLowerCase()}`),
        text("span", "status", ""),
      );
      if (root.dataset.hangUpUrl) header.append(hangUpForm(call.call_id));
      const lines = document.createElement("ol");
      lines.className = "lines";
      element.append(header, lines);
      list.append(element);
    }
    setStatus(element, call.status, call.status_label, call.live, call.end_reason);
    for (const line of call.lines || []) drawLine(element, line);
    showEmpty();
    return element;
  }

  function hangUpForm(callId) {
    const form = document.createElement("form");
    form.method = "post";
    form.className = "hang-up";
    form.action = root.dataset.hangUpUrl.replace(root.dataset.anyCall, callId);
    const csrf = document.createElement("input");
    csrf.type = "hidden";
    csrf.name = "csrfmiddlewaretoken";
    csrf.value = root.querySelector("[name=csrfmiddlewaretoken]").value;
    const button = text("button", "button", "Hang up");
    button.type = "submit";
    form.append(csrf, button);
    return form;
  }

  function setStatus(element, status, label, live, endReason) {
    const badge = element.querySelector(".status");
    badge.dataset.status = status;
    label = label.charAt(0).toUpperCase() + label.slice(1);
    badge.textContent = endReason && !live ? `${label}: ${endReason.replaceAll("_", " ")}` : label;
    element.dataset.live = live ? "true" : "false";
    const form = element.querySelector("form.hang-up");
    if (form && !live) form.remove();
  }

  function drawLine(element, line) {
    const lines = element.querySelector(".lines");
    let item = lines.querySelector(`li[data-seq="${line.seq}"]`);
    const fresh = text("li", "", "");
    fresh.dataset.seq = line.seq;
    fresh.dataset.role = line.role;
    fresh.append(
      text("span", "offset", offsetLabel(line.offset_ms)),
      text("span", "role", line.role === "agent" ? "Agent" : "Caller"),
      text("span", "text", line.text),
    );
    if (line.interrupted) fresh.append(" ", text("span", "cut", "(cut off)"));
    if (item) {
      item.replaceWith(fresh);
      return;
    }
    // In conversation order: a caller's words may be transcribed after the agent answered.
    const later = [...lines.querySelectorAll("li[data-seq]")].find(
      (other) => Number(other.dataset.seq) > line.seq,
    );
    lines.insertBefore(fresh, later || null);
  }

  // The quality figures a call's lines carry: its median reply time and its barge-ins so far.
  function drawFigures(element, figures) {
    let span = element.querySelector("header .figures");
    if (!span) {
      span = text("span", "figures", "");
      span.title = "So far: the median time from the caller stopping to the agent's reply, and " +
        "how often the caller cut the agent off (false: noise, after which the agent went on)";
      element.querySelector("header .status").before(span);
    }
    const parts = [];
    if (figures.replies && figures.response_latency_ms_p50 !== null) {
      const median = (figures.response_latency_ms_p50 / 1000).toFixed(1);
      parts.push(`reply ${median} s (median of ${figures.replies})`);
    }
    if (figures.barge_ins) {
      const falseOnes = figures.false_interruptions ? `, ${figures.false_interruptions} false` : "";
      parts.push(`${figures.barge_ins} barge-in${figures.barge_ins === 1 ? "" : "s"}${falseOnes}`);
    }
    span.textContent = parts.join(" · ");
  }

  function notice(element, message) {
    element.querySelector(".lines").append(text("li", "notice", message));
  }

  // -- events ---------------------------------------------------------------------------------

  function onEvent(event) {
    if (event.type === "ready") {
      retryMs = RETRY_MIN_MS;
      setConnection("live", "Live: new calls and lines appear as they happen.");
      return;
    }
    const element = event.call_id ? callElement(event.call_id) : null;
    if (!element) {
      if (!event.call_id) return;
      waiting.set(event.call_id, [...(waiting.get(event.call_id) || []), event]);
      resync([event.call_id]);
      return;
    }
    if (event.type === "line") {
      drawLine(element, event);
      if (event.figures) drawFigures(element, event.figures);
    } else if (event.type === "ended") {
      setStatus(element, event.status, event.status ? statusLabel(event.status) : "Ended", false, event.end_reason);
    } else if (event.type === "started") {
      setStatus(element, "in_progress", "In progress", true, "");
    } else if (event.type === "skipped") {
      notice(element, `${event.count} line(s) skipped to keep up; reloading this call's transcript.`);
      resync([event.call_id]);
    }
  }

  function statusLabel(status) {
    return status.replaceAll("_", " ");
  }

  // The live calls, plus ``callIds`` (default: every call shown as live, to learn how it ended).
  async function resync(callIds = null) {
    const shown = [...list.querySelectorAll('li.call[data-live="true"]')].map((e) => e.dataset.callId);
    const wanted = (callIds || shown).filter((id) => !fetching.has(id));
    wanted.forEach((id) => fetching.add(id));
    const query = new URLSearchParams(wanted.map((id) => ["call", id]));
    try {
      const response = await fetch(`${root.dataset.stateUrl}?${query}`, {
        headers: { Accept: "application/json" },
        credentials: "same-origin",
      });
      if (!response.ok) return;
      const { calls } = await response.json();
      const known = new Set(calls.map((call) => call.call_id));
      for (const call of calls) drawCall(call);
      // A call shown as live that is no longer among the live ones has ended meanwhile.
      for (const element of list.querySelectorAll('li.call[data-live="true"]')) {
        if (!known.has(element.dataset.callId)) setStatus(element, "ended", "Ended", false, "");
      }
    } catch (error) {
      // The next resync tries again.
    } finally {
      wanted.forEach((id) => fetching.delete(id));
      for (const id of wanted) {
        const events = waiting.get(id) || [];
        waiting.delete(id);
        if (callElement(id)) events.forEach(onEvent);
      }
    }
  }

  // -- the socket -----------------------------------------------------------------------------

  function connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const socket = new WebSocket(`${scheme}://${location.host}${root.dataset.socketPath}`);
    socket.onmessage = (message) => {
      try {
        onEvent(JSON.parse(message.data));
      } catch (error) {
        console.warn("live monitor: ignored a message", error);
      }
    };
    socket.onclose = (closed) => {
      root.dataset.closeCode = closed.code;
      if (REFUSALS[closed.code]) {
        setConnection("refused", REFUSALS[closed.code]);
        return;
      }
      setConnection("lost", `Live updates lost; trying again in ${retryMs / 1000} s.`);
      setTimeout(() => {
        connect();
        resync();
      }, retryMs);
      retryMs = Math.min(retryMs * 2, RETRY_MAX_MS);
    };
  }

  async function hangUp(submit) {
    const form = submit.target.closest("form.hang-up");
    if (!form) return;
    submit.preventDefault();
    const button = form.querySelector("button");
    button.disabled = true;
    button.textContent = "Hanging up…";
    const response = await fetch(form.action, {
      method: "POST",
      body: new FormData(form),
      headers: { Accept: "application/json" },
      credentials: "same-origin",
    }).catch(() => null);
    const answer = response ? await response.json().catch(() => ({})) : {};
    if (response && response.ok) {
      button.textContent = "Hang-up sent";
    } else {
      button.disabled = false;
      button.textContent = "Hang up";
      notice(form.closest("li.call"), answer.message || "The hang-up could not be sent.");
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    root = document.getElementById("live-monitor");
    list = document.getElementById("monitor-calls");
    connection = document.getElementById("monitor-connection");
    noCalls = document.getElementById("no-calls");
    root.addEventListener("submit", hangUp);
    connect();
    setInterval(() => resync(), RESYNC_MS);
  });
})();
