// The browser test call's page (telephony.carriers.browser, docs/carriers/browser.md).
//
// Start: POST to the page's start URL (a new Call and its stream token), open the media socket,
// send "start", then the microphone as "media" frames (PCM16 16 kHz, base64) from the worklet.
// The server's "media" goes to the worklet to play, its "mark" after it (echoed once played), its
// "clear" empties the worklet's queue. The transcript is polled every 500 ms until the call is
// over. Hang up sends "stop"; the server then closes the socket.
"use strict";

(function () {
  const POLL_MS = 500;
  const root = document.getElementById("browser-call");
  if (!root) return;
  const button = document.getElementById("call-button");
  const status = document.getElementById("call-status");
  const meter = document.getElementById("agent-audio");
  const transcript = document.getElementById("transcript");
  const callLink = document.getElementById("call-link");
  const csrf = root.querySelector("input[name=csrfmiddlewaretoken]").value;
  const workletUrl = document.currentScript
    ? new URL("browser-call-worklet.js", document.currentScript.src).href
    : null;
  const CLOSE_REASONS = {
    1000: "Call ended.",
    4001: "Refused: this call is for staff only, or its token is not valid.",
    4002: "Refused: the start of the call was not understood.",
    4003: "Refused: the call did not start in time.",
    4004: "Refused: the call cannot run (agent disabled or call over).",
    4011: "The server failed; see its log.",
  };

  let call = null; // {ids, socket, context, stream, node, poller, agentBytes}

  function setStatus(state, text) {
    status.dataset.state = state;
    status.textContent = text;
  }

  function setButton(state) {
    button.dataset.state = state;
    button.textContent = state === "live" ? "Hang up" : "Start call";
    button.disabled = state === "busy";
  }

  function toBase64(buffer) {
    const bytes = new Uint8Array(buffer);
    let text = "";
    for (let i = 0; i < bytes.length; i++) text += String.fromCharCode(bytes[i]);
    return btoa(text);
  }

  // PCM16 little-endian bytes (base64) as Float32 samples.
  function fromBase64(payload) {
    const text = atob(payload);
    const view = new DataView(new ArrayBuffer(text.length));
    for (let i = 0; i < text.length; i++) view.setUint8(i, text.charCodeAt(i));
    const samples = new Float32Array(text.length >> 1);
    for (let i = 0; i < samples.length; i++) samples[i] = view.getInt16(2 * i, true) / 0x8000;
    return samples;
  }

  function showAgentAudio(bytes) {
    meter.dataset.bytes = String(bytes);
    meter.textContent = `Agent audio received: ${(bytes / 32000).toFixed(1)} s.`;
  }

  function renderTranscript(entries) {
    transcript.replaceChildren(
      ...entries.map((entry) => {
        const item = document.createElement("li");
        item.dataset.role = entry.role;
        const role = document.createElement("span");
        role.className = "role";
        role.textContent = entry.role === "agent" ? "Agent:" : entry.role === "caller" ? "You:" : `${entry.role}:`;
        item.append(role, entry.text + (entry.interrupted ? " (interrupted)" : ""));
        return item;
      })
    );
  }

  async function poll(current) {
    try {
      const url = root.dataset.transcriptUrl.replace("00000000-0000-0000-0000-000000000000", current.ids.call_id);
      const response = await fetch(url, { credentials: "same-origin" });
      if (response.ok) {
        const data = await response.json();
        renderTranscript(data.transcript);
        // Over: the final rows are written as the call ends; a call that never started stays
        // ringing, so polling stops a few seconds after the socket closed in any case.
        if (current.closed && (data.final || ++current.pollsAfterClose > 10)) {
          clearInterval(current.poller);
          return;
        }
      }
    } catch (err) {
      console.warn("transcript poll failed", err);
    }
  }

  async function start() {
    setButton("busy");
    setStatus("connecting", "Starting the microphone…");
    let context = null;
    let stream = null;
    try {
      stream = await navigator.mediaDevices.getUserMedia({
        audio: { channelCount: 1, echoCancellation: true, noiseSuppression: false, autoGainControl: true },
      });
      context = new AudioContext();
      await context.audioWorklet.addModule(workletUrl);
      const response = await fetch(root.dataset.startUrl, {
        method: "POST",
        credentials: "same-origin",
        headers: { "X-CSRFToken": csrf },
      });
      const ids = await response.json();
      if (!response.ok) throw new Error(ids.error || `start refused (${response.status})`);
      call = { ids, stream, context, agentBytes: 0, closed: false, started: false, pollsAfterClose: 0 };
    } catch (err) {
      if (stream) stream.getTracks().forEach((track) => track.stop());
      if (context) context.close();
      setStatus("error", `Cannot start: ${err.message}`);
      setButton("idle");
      return;
    }
    const current = call;
    const link = callLink.querySelector("a");
    link.href = root.dataset.callUrl.replace("00000000-0000-0000-0000-000000000000", current.ids.call_id);
    callLink.hidden = false;
    transcript.replaceChildren();
    showAgentAudio(0);

    const node = new AudioWorkletNode(current.context, "browser-call", {
      numberOfInputs: 1,
      numberOfOutputs: 1,
      outputChannelCount: [1],
    });
    current.node = node;
    current.context.createMediaStreamSource(current.stream).connect(node);
    node.connect(current.context.destination);

    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const socket = new WebSocket(`${scheme}//${location.host}${root.dataset.mediaPath}`);
    current.socket = socket;
    socket.onopen = () => {
      socket.send(JSON.stringify({ event: "start", ...current.ids }));
      current.started = true;
      setStatus("live", "In call: speak now.");
      setButton("live");
    };
    node.port.onmessage = (event) => {
      const message = event.data;
      if (socket.readyState !== WebSocket.OPEN || !current.started) return;
      if (message.type === "frame") {
        socket.send(JSON.stringify({ event: "media", payload: toBase64(message.pcm) }));
      } else if (message.type === "played") {
        socket.send(JSON.stringify({ event: "mark", name: message.name }));
      }
    };
    socket.onmessage = (event) => {
      const frame = JSON.parse(event.data);
      if (frame.event === "media") {
        const audio = fromBase64(frame.payload);
        current.agentBytes += audio.length * 2;
        showAgentAudio(current.agentBytes);
        node.port.postMessage({ type: "audio", audio }, [audio.buffer]);
      } else if (frame.event === "mark") {
        node.port.postMessage({ type: "mark", name: frame.name });
      } else if (frame.event === "clear") {
        node.port.postMessage({ type: "clear" });
      }
    };
    socket.onclose = (event) => {
      current.closed = true;
      current.stream.getTracks().forEach((track) => track.stop());
      current.context.close();
      const text = CLOSE_REASONS[event.code] || `Disconnected (code ${event.code}).`;
      setStatus(event.code === 1000 ? "ended" : "refused", text);
      status.dataset.closeCode = String(event.code);
      setButton("idle");
      poll(current);
    };
    current.poller = setInterval(() => poll(current), POLL_MS);
  }

  function hangUp() {
    if (call && call.socket && call.socket.readyState === WebSocket.OPEN) {
      setButton("busy");
      setStatus("ending", "Hanging up…");
      call.socket.send(JSON.stringify({ event: "stop" }));
    }
  }

  button.addEventListener("click", () => (button.dataset.state === "live" ? hangUp() : start()));
})();
