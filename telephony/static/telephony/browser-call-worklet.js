// The browser test call's audio thread (an AudioWorklet): the microphone in, the agent's voice out.
//
// Capture: the context runs at the device rate (often 48 kHz); the call speaks PCM16 at 16 kHz.
// Each 16 kHz sample is the mean of the input samples it covers (a box filter: crude, but it keeps
// most aliasing out of the speech band), and every 20 ms (320 samples) go to the page as an
// Int16Array. Playback: the page posts the agent's audio (Float32 at 16 kHz) and the marks between
// it; they play in order, upsampled by linear interpolation. A mark is posted back ("played")
// once the audio before it has played, which is what the server's barge-in maths needs; "clear"
// drops the queued audio and answers the pending marks at once, as the phone carriers do.

const CALL_RATE = 16000;
const FRAME_SAMPLES = 320;

class BrowserCallProcessor extends AudioWorkletProcessor {
  constructor() {
    super();
    // Capture state: input samples per call sample, and the running mean.
    this.ratio = sampleRate / CALL_RATE;
    this.sum = 0;
    this.count = 0;
    this.due = this.ratio;
    this.frame = new Int16Array(FRAME_SAMPLES);
    this.filled = 0;
    // Playback state: a queue of {audio, offset} and {mark}; two call samples to interpolate.
    this.queue = [];
    this.step = CALL_RATE / sampleRate;
    this.phase = 0;
    this.previous = 0;
    this.current = 0;
    this.port.onmessage = (event) => this.receive(event.data);
  }

  receive(message) {
    if (message.type === "audio") {
      this.queue.push({ audio: message.audio, offset: 0 });
    } else if (message.type === "mark") {
      this.queue.push({ mark: message.name });
    } else if (message.type === "clear") {
      for (const item of this.queue) {
        if (item.mark !== undefined) this.port.postMessage({ type: "played", name: item.mark });
      }
      this.queue = [];
    }
  }

  // The next call sample to play (0 when nothing is queued), answering the marks it passes.
  nextSample() {
    while (this.queue.length) {
      const head = this.queue[0];
      if (head.mark !== undefined) {
        this.queue.shift();
        this.port.postMessage({ type: "played", name: head.mark });
        continue;
      }
      if (head.offset < head.audio.length) return head.audio[head.offset++];
      this.queue.shift();
    }
    return 0;
  }

  capture(input) {
    for (let i = 0; i < input.length; i++) {
      this.sum += input[i];
      this.count += 1;
      if (this.count >= this.due) {
        const value = Math.max(-1, Math.min(1, this.sum / this.count));
        this.frame[this.filled++] = value < 0 ? value * 0x8000 : value * 0x7fff;
        // Carry the fraction over, so 44.1 kHz averages out to exactly 16 kHz.
        this.due = this.due - this.count + this.ratio;
        this.sum = 0;
        this.count = 0;
        if (this.filled === FRAME_SAMPLES) {
          this.port.postMessage({ type: "frame", pcm: this.frame.buffer }, [this.frame.buffer]);
          this.frame = new Int16Array(FRAME_SAMPLES);
          this.filled = 0;
        }
      }
    }
  }

  play(output) {
    for (let i = 0; i < output.length; i++) {
      this.phase += this.step;
      while (this.phase >= 1) {
        this.phase -= 1;
        this.previous = this.current;
        this.current = this.nextSample();
      }
      output[i] = this.previous + (this.current - this.previous) * this.phase;
    }
  }

  process(inputs, outputs) {
    const input = inputs[0] && inputs[0][0];
    if (input) this.capture(input);
    const output = outputs[0];
    if (output && output[0]) {
      this.play(output[0]);
      for (let channel = 1; channel < output.length; channel++) output[channel].set(output[0]);
    }
    return true;
  }
}

registerProcessor("browser-call", BrowserCallProcessor);
