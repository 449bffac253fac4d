#!/usr/bin/env node
// Unit tests of the audio worklets (web/capture-worklet.js, web/playback-worklet.js) in plain
// Node: the AudioWorklet globals are shimmed, blocks of 128 samples are fed by hand.
// Prints one line per check and "worklets: N passed, N failed".

import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const WEB = join(dirname(fileURLToPath(import.meta.url)), "..", "web");
const processors = {};
globalThis.sampleRate = 48000;
globalThis.currentTime = 0;
globalThis.AudioWorkletProcessor = class {
  constructor() {
    this.port = { posted: [], onmessage: null, postMessage(m) { this.posted.push(m); } };
  }
};
globalThis.registerProcessor = (name, cls) => (processors[name] = cls);
await import(join(WEB, "capture-worklet.js"));
await import(join(WEB, "playback-worklet.js"));

let passed = 0;
let failed = 0;
function check(name, ok, detail = "") {
  if (ok) passed++;
  else failed++;
  console.log(`${ok ? "ok  " : "FAIL"} worklet: ${name}${detail ? ` — ${detail}` : ""}`);
}

// A port pair like MessageChannel's, synchronous.
function fakePort() {
  return { posted: [], onmessage: null, postMessage(m) { this.posted.push(m); } };
}

// ---- capture -----------------------------------------------------------------------------------

/// Feed `seconds` of `signal(t)` (one value per channel) at `rate` into a capture processor;
/// return the 24 kHz frames it posted, concatenated.
function capture(rate, seconds, signal, channels = 1) {
  globalThis.sampleRate = rate;
  const p = new processors["parle-capture"]();
  const out = fakePort();
  p.port.onmessage({ data: { type: "connect", port: out } });
  const total = Math.round(rate * seconds);
  for (let start = 0; start < total; start += 128) {
    const blocks = Array.from({ length: channels }, () => new Float32Array(128));
    for (let i = 0; i < 128; i++) {
      const v = signal((start + i) / rate);
      for (let c = 0; c < channels; c++) blocks[c][i] = Array.isArray(v) ? v[c] : v;
    }
    p.process([blocks]);
  }
  const frames = out.posted.filter((m) => m.type === "frame").map((m) => m.samples);
  const all = new Float32Array(frames.length * 1920);
  frames.forEach((f, i) => all.set(f, i * 1920));
  return { frames, all };
}

const sine = (hz, amp = 0.5) => (t) => amp * Math.sin(2 * Math.PI * hz * t);
const peak = (x, from = 0) => x.subarray(from).reduce((m, v) => Math.max(m, Math.abs(v)), 0);
function crossings(x) {
  let n = 0;
  for (let i = 1; i < x.length; i++) if ((x[i - 1] < 0) !== (x[i] < 0)) n++;
  return n;
}

for (const rate of [48000, 44100, 24000, 16000]) {
  const { frames, all } = capture(rate, 1, sine(440));
  const sizesOk = frames.every((f) => f.length === 1920);
  const expected = Math.floor((rate * 1) / (rate / 24000) / 1920); // 12 frames of 80 ms in 1 s
  check(`${rate} Hz: 1 s gives ${expected} frames of 1920 samples`, sizesOk && frames.length === expected, `${frames.length} frames`);
  // 440 Hz over the frames' duration: 2 crossings per period.
  const hz = crossings(all) / 2 / (all.length / 24000);
  check(`${rate} Hz: a 440 Hz tone stays 440 Hz at 24 kHz`, Math.abs(hz - 440) < 3, `${hz.toFixed(1)} Hz`);
  const amp = peak(all, 2000);
  check(`${rate} Hz: a 440 Hz tone keeps its amplitude`, Math.abs(amp - 0.5) < 0.01, `peak ${amp.toFixed(4)}`);
}
{
  globalThis.sampleRate = 24000;
  const { all } = capture(24000, 0.2, (t) => Math.round(t * 24000) / 10000);
  let exact = true;
  for (let i = 0; i < all.length; i++) exact &&= Math.abs(all[i] - i / 10000) < 1e-6;
  check("24 kHz context: samples pass through unchanged", exact && all.length === 3840);
}
{
  const { all } = capture(48000, 0.5, sine(20000));
  check("48 kHz: a 20 kHz tone is filtered out before decimation", peak(all, 2000) < 0.06, `peak ${peak(all, 2000).toFixed(4)} of 0.5`);
}
{
  const { all } = capture(48000, 0.5, (t) => [sine(440)(t), -sine(440)(t)], 2);
  check("stereo input is mixed to mono", peak(all) < 1e-6);
}

// ---- playback ----------------------------------------------------------------------------------

function playback(rate) {
  globalThis.sampleRate = rate;
  const p = new processors["parle-playback"]();
  const input = fakePort();
  p.port.onmessage({ data: { type: "connect", port: input } });
  return {
    p,
    push: (n, value = 0.5) => input.onmessage({ data: { type: "frame", samples: new Float32Array(n).fill(value) } }),
    // Run `quanta` render quanta; return the output samples.
    run(quanta) {
      const out = new Float32Array(quanta * 128);
      for (let q = 0; q < quanta; q++) {
        const block = new Float32Array(128);
        p.process([], [[block]]);
        globalThis.currentTime += 128 / rate;
        out.set(block, q * 128);
      }
      return out;
    },
  };
}

{
  const b = playback(24000);
  b.push(1000);
  const silent = b.run(8);
  check("playback waits until 80 ms are queued", peak(silent) === 0 && b.p.count === 1000);
  b.push(920); // 1920 samples = 80 ms: starts, after a 10 ms (240-sample) cushion
  const out = b.run(20); // 2560 samples
  const first = out.findIndex((v) => v !== 0);
  check("playback starts after the 10 ms cushion", first >= 240 && first <= 256 + 1, `first sound at sample ${first}`);
  check("playback fades in", out[first] < 0.1 && out[first + 100] > 0.35 && Math.abs(out[first + 200] - 0.5) < 1e-6);
  check("underrun is detected and counted", b.p.underruns === 1 && b.p.count === 0);
  check("underrun grows the cushion to 15 ms", b.p.cushion === 360, `${b.p.cushion} samples`);
  let jump = 0;
  for (let i = 1; i < out.length; i++) jump = Math.max(jump, Math.abs(out[i] - out[i - 1]));
  check("no clicks: fade in, and ramp down when the queue runs dry", jump < 0.01, `largest step ${jump.toFixed(4)}`);
  check("played audio is accounted", b.p.played === 1920, `${b.p.played} samples`);
}
{
  const b = playback(24000);
  b.push(1920);
  b.push(1920); // 3840 > 80 + 10 + 10 ms = 2400 samples: drop down to 80 + 10 ms
  check("overfull queue drops the oldest audio down to 90 ms", b.p.drops === 1 && b.p.count === 2160, `${b.p.count} samples queued`);
  check("a drop raises the allowance to 15 ms", b.p.maxExtra === 360);
  b.push(1920); // 4080 > 80 + 10 + 15 ms = 2520
  check("the allowance grows with each drop", b.p.drops === 2 && b.p.count === 2160 && b.p.maxExtra === 480);
}
{
  const b = playback(48000);
  b.push(1920);
  check("24 kHz frames are resampled to the 48 kHz context", Math.abs(b.p.count - 3840) <= 2, `${b.p.count} samples`);
  const a = b.run(10); // 4 quanta of cushion, then 6 of sound
  b.push(1920, 0.25);
  const c = b.run(60);
  const has = (x, v) => x.some((y) => Math.abs(y - v) < 1e-6);
  check("resampled audio plays at its level", has(a, 0.5) && has(c, 0.5) && has(c, 0.25) && has(c, 0.375), `${[has(a, 0.5), has(c, 0.5), has(c, 0.25), has(c, 0.375)]} drops ${b.p.drops}`);
}
for (const rate of [16000, 22050, 24000, 44100, 48000, 96000]) {
  const b = playback(rate);
  b.push(1920);
  check(`${rate} Hz context: one 80 ms frame is enough to start`, b.p.started, `${b.p.count} samples queued`);
}
{
  const b = playback(24000);
  b.push(1920);
  b.run(40);
  b.run(1);
  const stats = b.p.port.posted.at(-1);
  check("stats are posted", stats && typeof stats.played === "number" && typeof stats.bufferedMs === "number");
}

console.log(`worklets: ${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
