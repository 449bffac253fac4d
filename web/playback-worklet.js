// Playback with an adaptive jitter buffer (the behaviour of Kyutai's client, spec §6.1).
//
// Input: {type: "frame", samples: Float32Array} at 24 kHz on the port given by
// {type: "connect", port} (or on the node's own port); {type: "reset"} empties the buffer.
// Frames are resampled to the AudioContext's rate on arrival and queued.
//
// - Start playing once 80 ms are queued, after a further "cushion" of 10 ms; fade in.
// - Underrun (a render quantum the queue cannot fill): fade out what is left, grow the cushion by
//   5 ms (at most 80 ms), and buffer again.
// - Queue longer than 80 ms + cushion + max extra (10 ms at first): drop the oldest samples down to
//   80 ms + cushion, and allow 5 ms more extra next time (at most 80 ms).
// Every 250 ms the node's port receives {played, missed (seconds), bufferedMs, minDelayMs,
// maxDelayMs, underruns, drops, cushionMs, maxExtraMs, latencyMs}. A frame may carry `time`: the
// AudioContext time at which the capture worklet finished the microphone frame it answers;
// latencyMs is then the mean (over the last 2 s) of when that frame's last sample will play minus
// that time: the whole path capture → model → jitter buffer, without the hardware's own latency.

import { Resampler } from "./resample.js";

const IN_RATE = 24000;
const ms = (t) => Math.round((t * sampleRate) / 1000);

class PlaybackProcessor extends AudioWorkletProcessor {
  constructor() {
    super();
    this.ring = new Float32Array(ms(4000)); // never full: drops keep the queue near 300 ms at most
    this.read = 0;
    this.count = 0;
    this.initial = ms(80);
    // The resampler holds back up to one input sample, so one 80 ms frame can yield a sample or
    // two short of 80 ms; without this slack the start would wait a whole frame more.
    this.slack = Math.ceil(sampleRate / IN_RATE) + 1;
    this.cushionStep = ms(5);
    this.cushionMax = ms(80);
    this.extraStep = ms(5);
    this.extraMax = ms(80);
    this.enqueue = (y) => {
      if (this.count === this.ring.length) this.skip(1);
      this.ring[(this.read + this.count) % this.ring.length] = y;
      this.count++;
    };
    this.reset();
    this.lastReport = 0;
    this.port.onmessage = (e) => this.onMessage(this.port, e.data);
  }

  reset() {
    this.read = this.count = 0;
    this.resampler = new Resampler(IN_RATE, sampleRate);
    this.cushion = ms(10);
    this.maxExtra = ms(10);
    this.started = false;
    this.wait = 0; // cushion samples still to wait before playing
    this.fadeIn = false;
    this.last = 0; // last sample played
    this.played = this.missed = 0; // samples
    this.underruns = this.drops = 0;
    this.minDelay = Infinity;
    this.maxDelay = 0;
    this.latencies = [];
  }

  onMessage(port, m) {
    if (m.type === "connect") {
      m.port.onmessage = (e) => this.onMessage(m.port, e.data);
    } else if (m.type === "reset") {
      this.reset();
    } else if (m.type === "frame") {
      this.resampler.run(m.samples, this.enqueue); // 24 kHz -> context rate, into the ring
      if (typeof m.time === "number") {
        const playAt = currentTime + (this.count + (this.started ? Math.max(0, this.wait) : this.cushion)) / sampleRate;
        this.latencies.push(playAt - m.time);
        if (this.latencies.length > 25) this.latencies.shift();
      }
      if (!this.started && this.count >= this.initial - this.slack) {
        this.started = true;
        this.wait = this.cushion;
        this.fadeIn = true;
      }
      if (this.count >= this.initial + this.cushion + this.maxExtra) {
        this.skip(this.count - (this.initial + this.cushion));
        this.maxExtra = Math.min(this.maxExtra + this.extraStep, this.extraMax);
        this.drops++;
      }
    }
  }

  skip(k) {
    this.read = (this.read + k) % this.ring.length;
    this.count -= k;
  }

  process(_inputs, outputs) {
    const out = outputs[0][0];
    const len = out.length;
    if (!this.started || this.wait > 0) {
      // Buffering: silence (outputs start zeroed), counted as missed once playback has begun.
      if (this.started) this.wait -= len;
      if (this.played > 0) this.missed += len;
    } else {
      this.minDelay = Math.min(this.minDelay, this.count);
      this.maxDelay = Math.max(this.maxDelay, this.count);
      const n = Math.min(len, this.count);
      for (let i = 0; i < n; i++) out[i] = this.ring[(this.read + i) % this.ring.length];
      this.skip(n);
      if (this.fadeIn) {
        for (let i = 0; i < n; i++) out[i] *= i / n;
        this.fadeIn = false;
      }
      if (n < len) {
        // Underrun: fade out what there is, or, when the queue ran dry exactly at the end of the
        // last quantum, ramp from the last sample played down to zero; then buffer again.
        if (n > 0) for (let i = 0; i < n; i++) out[i] *= (n - i) / n;
        else for (let i = 0; i < Math.min(len, 64); i++) out[i] = (this.last * (64 - i - 1)) / 64;
        this.cushion = Math.min(this.cushion + this.cushionStep, this.cushionMax);
        this.started = false;
        this.underruns++;
        this.missed += len - n;
      }
      this.last = n > 0 ? out[n - 1] : 0;
      this.played += n;
    }
    this.report();
    return true;
  }

  report() {
    if (currentTime - this.lastReport < 0.25) return;
    this.lastReport = currentTime;
    const toMs = (s) => (s * 1000) / sampleRate;
    this.port.postMessage({
      played: this.played / sampleRate,
      missed: this.missed / sampleRate,
      bufferedMs: toMs(this.count),
      minDelayMs: this.minDelay === Infinity ? 0 : toMs(this.minDelay),
      maxDelayMs: toMs(this.maxDelay),
      underruns: this.underruns,
      drops: this.drops,
      cushionMs: toMs(this.cushion),
      maxExtraMs: toMs(this.maxExtra),
      latencyMs: this.latencies.length ? (1000 * this.latencies.reduce((a, b) => a + b, 0)) / this.latencies.length : null,
    });
  }
}

registerProcessor("parle-playback", PlaybackProcessor);
