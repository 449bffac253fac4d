// Microphone capture: mixes the input to mono, resamples it from the AudioContext's rate to
// 24 kHz and posts frames of exactly 1920 samples (80 ms, one Mimi frame) as
// {type: "frame", samples: Float32Array, time} on the port given by {type: "connect", port}
// (or on the node's own port until one is given). The Float32Array's buffer is transferred.

import { Resampler } from "./resample.js";

const OUT_RATE = 24000;
const FRAME = 1920;

// Second-order low-pass section (RBJ cookbook), direct form I.
class Biquad {
  constructor(cutoff, rate) {
    const w = (2 * Math.PI * cutoff) / rate;
    const alpha = Math.sin(w) / (2 * Math.SQRT1_2);
    const cos = Math.cos(w);
    const a0 = 1 + alpha;
    this.b0 = (1 - cos) / 2 / a0;
    this.b1 = (1 - cos) / a0;
    this.b2 = this.b0;
    this.a1 = (-2 * cos) / a0;
    this.a2 = (1 - alpha) / a0;
    this.x1 = this.x2 = this.y1 = this.y2 = 0;
  }
  run(x) {
    const y = this.b0 * x + this.b1 * this.x1 + this.b2 * this.x2 - this.a1 * this.y1 - this.a2 * this.y2;
    this.x2 = this.x1;
    this.x1 = x;
    this.y2 = this.y1;
    this.y1 = y;
    return y;
  }
}

class CaptureProcessor extends AudioWorkletProcessor {
  constructor() {
    super();
    this.resampler = new Resampler(sampleRate, OUT_RATE);
    // Anti-aliasing before decimation: 4th-order low-pass a little under 12 kHz.
    this.filters = sampleRate > OUT_RATE ? [new Biquad(0.45 * OUT_RATE, sampleRate), new Biquad(0.45 * OUT_RATE, sampleRate)] : [];
    this.mono = new Float32Array(128);
    this.emitSample = (y) => {
      this.frame[this.fill++] = y;
      if (this.fill === FRAME) this.emit();
    };
    this.frame = new Float32Array(FRAME);
    this.fill = 0;
    this.out = this.port;
    this.port.onmessage = (e) => {
      if (e.data.type === "connect") this.out = e.data.port;
    };
  }

  process(inputs) {
    const channels = inputs[0];
    if (!channels || channels.length === 0) return true; // not connected yet
    const n = channels[0].length;
    if (this.mono.length !== n) this.mono = new Float32Array(n);
    const x = this.mono;
    for (let i = 0; i < n; i++) {
      let s = 0;
      for (let c = 0; c < channels.length; c++) s += channels[c][i];
      s /= channels.length;
      for (const f of this.filters) s = f.run(s);
      x[i] = s;
    }
    this.resampler.run(x, this.emitSample);
    return true;
  }

  emit() {
    const samples = this.frame;
    this.out.postMessage({ type: "frame", samples, time: currentTime }, [samples.buffer]);
    this.frame = new Float32Array(FRAME);
    this.fill = 0;
  }
}

registerProcessor("parle-capture", CaptureProcessor);
