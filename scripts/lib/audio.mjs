// Small audio and file helpers for the browser tests (Node): WAV in/out, safetensors tensors,
// deterministic test signals, correlation.

import { readFileSync, writeFileSync } from "node:fs";

/** Mono WAV, 16-bit PCM (`samples` in [-1, 1]); returns the samples as the reader sees them. */
export function writeWav16(path, samples, rate) {
  const n = samples.length;
  const b = Buffer.alloc(44 + 2 * n);
  b.write("RIFF", 0);
  b.writeUInt32LE(36 + 2 * n, 4);
  b.write("WAVEfmt ", 8);
  b.writeUInt32LE(16, 16);
  b.writeUInt16LE(1, 20);
  b.writeUInt16LE(1, 22);
  b.writeUInt32LE(rate, 24);
  b.writeUInt32LE(rate * 2, 28);
  b.writeUInt16LE(2, 32);
  b.writeUInt16LE(16, 34);
  b.write("data", 36);
  b.writeUInt32LE(2 * n, 40);
  const quantized = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const v = Math.max(-32768, Math.min(32767, Math.round(samples[i] * 32767)));
    b.writeInt16LE(v, 44 + 2 * i);
    quantized[i] = v / 32768; // what parle's reader (hound, i16 / 2^15) gives
  }
  writeFileSync(path, b);
  return quantized;
}

/** Read a WAV (16-bit PCM or 32-bit float), all channels: { rate, channels: [Float32Array] }. */
export function readWav(path) {
  const b = readFileSync(path);
  if (b.toString("ascii", 0, 4) !== "RIFF" || b.toString("ascii", 8, 12) !== "WAVE") throw new Error(`${path}: not a WAV`);
  let o = 12;
  let fmt = null;
  while (o + 8 <= b.length) {
    const id = b.toString("ascii", o, o + 4);
    const len = b.readUInt32LE(o + 4);
    const body = o + 8;
    if (id === "fmt ") {
      fmt = { format: b.readUInt16LE(body), ch: b.readUInt16LE(body + 2), rate: b.readUInt32LE(body + 4), bits: b.readUInt16LE(body + 14) };
      if (fmt.format === 0xfffe) fmt.format = b.readUInt16LE(body + 24);
    } else if (id === "data") {
      const bytes = fmt.bits / 8;
      const frames = Math.floor(Math.min(len, b.length - body) / (bytes * fmt.ch));
      const channels = Array.from({ length: fmt.ch }, () => new Float32Array(frames));
      for (let i = 0; i < frames; i++) {
        for (let c = 0; c < fmt.ch; c++) {
          const at = body + (i * fmt.ch + c) * bytes;
          channels[c][i] = fmt.format === 3 ? b.readFloatLE(at) : b.readInt16LE(at) / 32768;
        }
      }
      return { rate: fmt.rate, channels };
    }
    o = body + len + (len & 1);
  }
  throw new Error(`${path}: no data chunk`);
}

/** The tensors of a safetensors file: { name: { dtype, shape, values: number[] } } (ints, floats). */
export function readSafetensors(path) {
  const b = readFileSync(path);
  const n = Number(b.readBigUInt64LE(0));
  const header = JSON.parse(b.toString("utf8", 8, 8 + n));
  const out = {};
  for (const [name, t] of Object.entries(header)) {
    if (name === "__metadata__") continue;
    const [s, e] = t.data_offsets.map((x) => x + 8 + n);
    const values = [];
    for (let o = s; o < e; ) {
      switch (t.dtype) {
        case "I64":
          values.push(Number(b.readBigInt64LE(o)));
          o += 8;
          break;
        case "I32":
          values.push(b.readInt32LE(o));
          o += 4;
          break;
        case "U32":
          values.push(b.readUInt32LE(o));
          o += 4;
          break;
        case "F32":
          values.push(b.readFloatLE(o));
          o += 4;
          break;
        default:
          throw new Error(`${path}: dtype ${t.dtype} not handled`);
      }
    }
    out[name] = { dtype: t.dtype, shape: t.shape, values };
  }
  return out;
}

/** A deterministic test signal: chirps and tone bursts with pauses, plus a little noise. */
export function testSignal(seconds, rate, seed = 1) {
  const n = Math.round(seconds * rate);
  const x = new Float32Array(n);
  let s = seed >>> 0;
  const rnd = () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32 - 0.5;
  };
  for (let i = 0; i < n; i++) {
    const t = i / rate;
    const seg = Math.floor(t / 0.5);
    const local = t - seg * 0.5;
    // 0.4 s of sound, 0.1 s pause; alternate chirps and two-tone bursts.
    const env = local < 0.4 ? Math.sin((Math.PI * local) / 0.4) : 0;
    const f0 = 180 + 60 * (seg % 5);
    const tone = seg % 2 === 0 ? Math.sin(2 * Math.PI * (f0 * t + 300 * local * local)) : 0.6 * Math.sin(2 * Math.PI * f0 * t) + 0.4 * Math.sin(2 * Math.PI * 2.5 * f0 * t);
    x[i] = 0.5 * env * tone + 0.01 * rnd();
  }
  return x;
}

/** Linear-interpolation resampling (for comparisons only). */
export function resampleLinear(x, from, to) {
  const n = Math.floor((x.length * to) / from);
  const y = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const p = (i * from) / to;
    const k = Math.floor(p);
    const f = p - k;
    y[i] = (x[k] ?? 0) * (1 - f) + (x[k + 1] ?? 0) * f;
  }
  return y;
}

export function rms(x) {
  let s = 0;
  for (let i = 0; i < x.length; i++) s += x[i] * x[i];
  return Math.sqrt(s / Math.max(1, x.length));
}

/** RMS per window of `w` samples. */
export function envelope(x, w) {
  const out = [];
  for (let i = 0; i + w <= x.length; i += w) out.push(rms(x.subarray(i, i + w)));
  return out;
}

/** Pearson correlation of a and b (same length). */
export function pearson(a, b) {
  const n = Math.min(a.length, b.length);
  let ma = 0;
  let mb = 0;
  for (let i = 0; i < n; i++) {
    ma += a[i];
    mb += b[i];
  }
  ma /= n;
  mb /= n;
  let sab = 0;
  let saa = 0;
  let sbb = 0;
  for (let i = 0; i < n; i++) {
    const da = a[i] - ma;
    const db = b[i] - mb;
    sab += da * db;
    saa += da * da;
    sbb += db * db;
  }
  return sab / Math.sqrt(saa * sbb + 1e-30);
}

/** Best correlation of b shifted by 0..maxLag against a: { r, lag }. */
export function bestLag(a, b, maxLag) {
  let best = { r: -2, lag: 0 };
  for (let lag = 0; lag <= maxLag; lag++) {
    const n = Math.min(a.length - lag, b.length);
    if (n < 10) break;
    const r = pearson(a.slice(lag, lag + n), b.slice(0, n));
    if (r > best.r) best = { r, lag };
  }
  return best;
}

// The source of an AudioWorklet module registering `name`: a processor that posts what reaches
// its input in Float32Array blocks of `block` samples (the browser tests' tap on an audio graph;
// load it from a Blob URL).
export function tapWorkletSource(name, block) {
  return `registerProcessor(${JSON.stringify(name)}, class extends AudioWorkletProcessor {
  constructor() { super(); this.buf = new Float32Array(${block}); this.n = 0; }
  process(inputs) {
    const x = inputs[0][0];
    if (x) for (let i = 0; i < x.length; i++) { this.buf[this.n++] = x[i]; if (this.n === this.buf.length) { this.port.postMessage(this.buf); this.buf = new Float32Array(${block}); this.n = 0; } }
    return true;
  }
});`;
}
