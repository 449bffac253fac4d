// parle's JavaScript API (an ES module for the page). The engine runs in a module Worker with its
// own WebGPU device, so nothing here blocks the page:
//
//   import { createEngine } from "./parle.js";
//   const engine = await createEngine({ forceF32, noSubgroups });
//   const info = await engine.load("models/moshiko-mlx-q4/", { onProgress });  // { kind: "moshi" | "mimi" | "stt" | "hibiki", io, sampling, cfg, … }
//   engine.configure({ greedy, seed, textTemperature, textTopK, audioTemperature, audioTopK, codebooks, cfg });
//   const { pcm, text, textToken, audioTokens } = await engine.step(new Float32Array(1920)); // 24 kHz
//   // Kyutai STT (kind "stt"): pcm is null; `extraHeads` (Float32Array [heads × dim]) and
//   // `endOfTurn` (extra head 2's first probability, > 0.5 = end of turn in Kyutai's scripts).
//   // Kyutai Hibiki (kind "hibiki", speech translation): step() every frame of the speech, then
//   // `await engine.endOfInput()` once, then step() silence until `textToken` is 2 (EOS).
//   // `cfg` (load option, configure) is the classifier-free guidance coefficient (1: none).
//   await engine.startConversation({ onText, onStats, echoPath });  // microphone -> Moshi -> speakers
//   await engine.stop();
//   engine.reset(); engine.dispose();
//
// Every rejection is an Error whose `code` names the cause: no-webgpu, no-adapter, limits, wasm,
// gpu, device-lost, oom, download, quota, storage, config, weights, mic-denied, no-mic, audio,
// busy, no-model, input, disposed; download and weight errors also carry `file`.
//
// Echo: Moshi listens while it speaks, so the browser's echo canceller must hear what is played.
// startConversation's `echoPath` says how the model's audio reaches the speakers:
//   "direct"  playback worklet -> AudioContext destination (cancelled by Chrome-wide echo
//             cancellation and by Firefox, whose canceller sees its own graph at the default rate);
//   "peer"    playback worklet -> MediaStreamDestination -> local RTCPeerConnection pair (Opus over
//             loopback, no server) -> <audio>: the far-end audio that every WebRTC canceller
//             cancels (older Chromium cancelled nothing else); adds the jitter buffer's delay;
//   "auto"    (default) chooseEchoPath() decides from the browser.
// The path taken and why are in startConversation's result and in every onStats (`echoPath`,
// `echoPathReason`); if the peer connection does not connect, playback falls back to direct.

import { chooseEchoPath, peerPlayback } from "./echo.js";

export { chooseEchoPath, peerPlayback };

const FRAME = 1920;

function engineError(e) {
  const err = new Error(e.message);
  err.code = e.code;
  if (e.file) err.file = e.file;
  return err;
}

function fail(code, message) {
  const err = new Error(message);
  err.code = code;
  return err;
}

const MIC_ERRORS = {
  NotAllowedError: [
    "mic-denied",
    "Microphone access was denied. Allow the microphone for this site (the icon in the address bar, or the site settings) and try again.",
  ],
  SecurityError: ["mic-denied", "The browser or a policy blocks the microphone for this page (it needs https:// or localhost)."],
  NotFoundError: ["no-mic", "No microphone found: plug in or enable one and try again."],
  NotReadableError: ["no-mic", "The microphone could not be opened: another application may be using it."],
  OverconstrainedError: ["no-mic", "No microphone matches the requested settings."],
};

/**
 * Start an engine: a worker with its own WebGPU device. Rejects with an Error naming what is
 * missing (`code` no-webgpu, no-adapter, limits, wasm).
 */
export async function createEngine(options = {}) {
  if (typeof window !== "undefined" && !window.isSecureContext) {
    throw fail("no-webgpu", `WebGPU needs a secure page (https:// or localhost); this one is ${location.origin}.`);
  }
  if (!("gpu" in navigator)) {
    throw fail(
      "no-webgpu",
      "This browser has no WebGPU (navigator.gpu is undefined). Use a recent Chrome or Edge (113+), Safari 26+ or Firefox 141+; on Linux, Chrome needs chrome://flags/#enable-unsafe-webgpu.",
    );
  }
  const engine = new Engine(options);
  try {
    engine.gpu = await engine._call("init", { forceF32: !!options.forceF32, noSubgroups: !!options.noSubgroups });
  } catch (e) {
    engine.dispose();
    throw e;
  }
  return engine;
}


export class Engine {
  constructor(options) {
    this.options = options;
    this.gpu = null; // { version, report, adapter: { software, maxBufferSize, … } }
    this.model = null; // what load() resolved to
    this._worker = new Worker(new URL("./worker.js", import.meta.url), { type: "module" });
    this._next = 1;
    this._pending = new Map();
    this._listeners = {};
    this._audio = null;
    this._disposed = false;
    this._worker.onmessage = (e) => this._onMessage(e.data);
    this._worker.onerror = (e) => {
      e.preventDefault();
      const err = fail("wasm", `The engine worker failed: ${e.message || "unknown error"} (module workers need Chrome 80+, Safari 15+, Firefox 114+)`);
      for (const { reject } of this._pending.values()) reject(err);
      this._pending.clear();
    };
  }

  _call(op, args = {}, transfer = []) {
    if (this._disposed) return Promise.reject(fail("disposed", "this engine was disposed: create a new one"));
    const id = this._next++;
    return new Promise((resolve, reject) => {
      this._pending.set(id, { resolve, reject });
      this._worker.postMessage({ id, op, ...args }, transfer);
    });
  }

  _onMessage(m) {
    if (m.id !== undefined) {
      const p = this._pending.get(m.id);
      if (!p) return;
      this._pending.delete(m.id);
      if (m.ok) p.resolve(m.value);
      else p.reject(engineError(m.error));
      return;
    }
    this._listeners[m.event]?.(m);
  }

  /**
   * Load a model: `source` is a directory URL (a trailing "/" is added; relative URLs resolve
   * against the page) laid out as a Kyutai Hugging Face repo, or the files of a local folder
   * (a FileList / File[] from an <input type=file webkitdirectory>, or a directory handle from
   * showDirectoryPicker()). Files are downloaded into the browser's storage once (resuming an
   * interrupted download) and read from there afterwards; local files are read in place.
   * `onProgress({ phase: "download" | "gpu", file, loaded, total, rate, eta, overall })`; download
   * events carry `overall: { loaded, total, rate, eta }` over all of the model's files. Options:
   * `mimiOnly` (the codec loopback from a Moshi repository: only Mimi is downloaded),
   * `codebooks` (loopback), `storage: "cache"` (force the Cache Storage fallback), `sampling`
   * (`{ greedy, seed, textTemperature, textTopK, audioTemperature, audioTopK }`, each over the
   * model's own default: its config.json's `lm_gen_config`, else PyTorch LMGen's), `warmup`
   * (default true: run one silent frame at load so that the GPU pipelines are compiled before the
   * conversation starts; `info.warmupMs` says how long it took). An unknown option or a value of
   * the wrong type is an `input` error naming it. `cfg`: classifier-free guidance coefficient
   * (Hibiki; default the model's `lm_gen_config.cfg_coef`, else 1 = none, one lane; another
   * value runs a second, negatively conditioned lane; `info.cfg` says what is in effect).
   * `quant` (`"q4"`, `"q8"`, `"q8_0"`, `"bf16"`, `"f32"`) converts a bf16/f32 LM's linear
   * weights at load, so that a bf16-only repository fits a smaller GPU (`parle run --quant`;
   * an already quantized checkpoint is dequantized and converted as well); `info.quant` names it.
   * `info.kind` is "moshi", "stt", "hibiki" or "mimi". `info.io` says what the model hears and says
   * (`inputCodebooks`, `outputCodebooks`, `text`), `info.sampling` the sampling in effect.
   */
  async load(source, { onProgress, codebooks, storage, sampling, mimiOnly, warmup, cfg, quant } = {}) {
    let src;
    if (typeof source === "string" || source instanceof URL) {
      let url = new URL(String(source), document.baseURI).href;
      if (!url.endsWith("/")) url += "/";
      src = { kind: "url", url };
      // Ask for storage that is not evicted under pressure (Window only, so here).
      try {
        await navigator.storage?.persist?.();
      } catch {}
    } else {
      src = { kind: "local", files: await localFiles(source) };
    }
    this._listeners.progress = (m) => onProgress?.(m);
    try {
      this.model = await this._call("load", { source: src, codebooks, storage, sampling, mimiOnly, warmup, cfg, quant });
    } finally {
      this._listeners.progress = null;
    }
    return this.model;
  }

  /**
   * What load(source) would need, asked of the server before any download (or, for local
   * files, read from them in place): resolves to
   * `{ kind, io, sampling, files: [{ role, name, size, stored }], bytes, toDownload, gpuBytes, gpu }`
   * (`stored`: bytes already in this browser's storage; `gpuBytes`: the GPU memory the load will
   * allocate, estimated from config.json and the LM checkpoint's header (Range requests), `gpu`
   * its parts; null when the server does not give the sizes). `quant`: the estimate for a load
   * with that `quant` option (the LM's linears converted).
   */
  async inspect(source, { mimiOnly = false, quant } = {}) {
    if (typeof source !== "string" && !(source instanceof URL)) {
      // Local files: read in place (config.json and the LM header through File.slice).
      return this._call("inspect", { local: await localFiles(source), mimiOnly, quant });
    }
    let url = new URL(String(source), document.baseURI).href;
    if (!url.endsWith("/")) url += "/";
    return this._call("inspect", { url, mimiOnly, quant });
  }

  /**
   * Sampling settings, each over the current value (apply from the next frame); `codebooks`
   * reloads the Mimi loopback; `cfg` changes the guidance coefficient (switching guidance on or
   * off, from or to 1, only right after load() or reset()). An unknown option or a bad value is an `input` error naming it.
   */
  configure(options = {}) {
    return this._call("configure", { options });
  }

  /** One 80 ms frame: 1920 samples at 24 kHz in, the model's frame out. */
  async step(pcm) {
    if (!(pcm instanceof Float32Array) || pcm.length !== FRAME) {
      throw fail("input", `step() takes a Float32Array of ${FRAME} samples at 24 kHz`);
    }
    const copy = pcm.slice();
    return this._call("step", { pcm: copy }, [copy.buffer]);
  }

  /**
   * Hibiki: the end-of-input frame, once after the last frame of the speech to translate
   * (Kyutai's `run_inference`); resolves like step(). Then step() silence until textToken 2.
   */
  endOfInput() {
    return this._call("step", { endOfInput: true });
  }

  /** Forget the conversation so far. */
  reset() {
    return this._call("reset");
  }

  /** Free the GPU and stop the worker. */
  dispose() {
    if (this._disposed) return;
    this.stop().catch(() => {});
    for (const { reject } of this._pending.values()) reject(fail("disposed", "the engine was disposed"));
    this._pending.clear();
    this._worker.postMessage({ id: 0, op: "dispose" });
    this._worker.terminate();
    this._disposed = true;
  }

  /** Wasm memory in bytes (the engine's CPU-side memory). */
  async memory() {
    return (await this._call("memory")).wasmBytes;
  }

  /** Run one GELU kernel against the CPU reference; resolves to a one-line summary. */
  selfTest() {
    return this._call("selfTest");
  }

  /**
   * Models kept in the browser's storage: [{ url, key, bytes, complete, legacy }] (`legacy`: a
   * store from an older version of parle, never used again; deleteCached(url) removes it).
   */
  cached() {
    return this._call("cached");
  }

  /** Delete one cached model (by URL), or all of them. */
  deleteCached(url) {
    return this._call("deleteCached", { url: url ? new URL(url.endsWith("/") ? url : `${url}/`, document.baseURI).href : undefined });
  }

  /**
   * Kyutai STT: the words of a live stream with their times, from the `textToken` of every step
   * since the last reset() (in order), by the engine's implementation of Kyutai's procedure.
   * Resolves to `{ words: [{ text, start, end }], offsetSeconds, frameRate }` (seconds from the
   * stream's first frame; step s is at s / frameRate − offsetSeconds).
   */
  words(tokens) {
    return this._call("words", { tokens: Array.from(tokens ?? []) });
  }

  /**
   * Random-weight frames at a preset size ("mimi", "lm-small", "lm-7b", "stt-1b", "stt-2.6b", "tiny"): timings.
   * With `profile: true`, also `profile`: per group of the frame and kernel, launches, bytes read
   * and, where the adapter has timestamp-query (`profile.timed`), GPU ms, GB/s and the fraction of
   * a copy's rate (`rows`, and the same as text in `table`).
   */
  bench(options = {}) {
    return this._call("bench", { options });
  }

  /**
   * Talk: microphone -> capture worklet -> worker (model) -> playback worklet -> speakers. The
   * frames travel worklet <-> worker on their own MessagePorts, never through this thread.
   * `onText(text)`, `onStats(stats)` (merged engine and playback stats), `onError(err)`;
   * `onStep({ text, textToken, endOfTurn, frame, audioTokens })` for every frame the model ran
   * (captions, translation; `audioTokens`: the model's codebooks of the completed frame, or null).
   * Stats include `framesIn`, `framesOut`, `dropped` (microphone frames skipped because the GPU
   * could not keep up), `speed` (this GPU runs this model at `speed`× real time), `latencyMs`
   * (mic -> speaker) and `latencyBoundMs` (what it cannot exceed), `gpuBytes`, `wasmBytes`.
   * `record: true` keeps both sides for recording(). `echoPath`: "auto" (default), "direct" or
   * "peer" (see the top of this file). Resolves to { sampleRate, settings, label, echoPath,
   * echoPathReason, echoFallback } (echoFallback: the peer path was asked for but did not connect).
   */
  async startConversation({ onText, onStats, onError, onStep, record = false, deviceId, echoPath = "auto" } = {}) {
    if (!this.model) throw fail("no-model", "no model is loaded: call load() first");
    if (!["auto", "direct", "peer"].includes(echoPath)) {
      throw fail("input", `echoPath must be "auto", "direct" or "peer", not ${JSON.stringify(echoPath)}`);
    }
    await this.stop();
    if (!navigator.mediaDevices?.getUserMedia) {
      throw fail("mic-denied", "navigator.mediaDevices is missing: the page must be served over https:// or from localhost.");
    }
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({
        audio: {
          channelCount: 1,
          echoCancellation: true,
          noiseSuppression: true,
          autoGainControl: true,
          ...(deviceId ? { deviceId: { exact: deviceId } } : {}),
        },
      });
    } catch (e) {
      const [code, msg] = MIC_ERRORS[e.name] ?? ["audio", "The microphone could not be started."];
      throw fail(code, `${msg} (${e.name}: ${e.message})`);
    }
    let ctx;
    let peer = null;
    let poll = null;
    try {
      // The device's own rate: the worklets resample to and from 24 kHz (echo cancellation
      // needs capture and playback in one graph at the default rate).
      ctx = new AudioContext({ latencyHint: "interactive" });
      await Promise.all([
        ctx.audioWorklet.addModule(new URL("./capture-worklet.js", import.meta.url)),
        ctx.audioWorklet.addModule(new URL("./playback-worklet.js", import.meta.url)),
      ]);
      const capture = new AudioWorkletNode(ctx, "parle-capture", { numberOfInputs: 1, numberOfOutputs: 0 });
      const playback = new AudioWorkletNode(ctx, "parle-playback", { numberOfInputs: 0, numberOfOutputs: 1, outputChannelCount: [1] });
      const toWorker = new MessageChannel();
      const fromWorker = new MessageChannel();
      capture.port.postMessage({ type: "connect", port: toWorker.port1 }, [toWorker.port1]);
      playback.port.postMessage({ type: "connect", port: fromWorker.port1 }, [fromWorker.port1]);
      const choice = echoPath === "auto" ? chooseEchoPath() : { path: echoPath, reason: `echoPath "${echoPath}" was asked for` };
      const echo = { echoPath: choice.path, echoPathReason: choice.reason, echoFallback: false };
      if (choice.path === "peer") {
        try {
          peer = await peerPlayback(ctx, playback);
        } catch (e) {
          // Never silence: play directly, and say why in every stats report.
          Object.assign(echo, { echoPath: "direct", echoPathReason: `peer path failed, playing directly: ${e.message}`, echoFallback: true });
        }
      }
      if (!peer) playback.connect(ctx.destination);
      let engineStats = {};
      let playStats = {};
      let peerStats = null;
      const emit = () => {
        const hardwareLatencyMs = 1000 * ((ctx.baseLatency ?? 0) + (ctx.outputLatency ?? 0));
        // The peer path delays playback by one Opus packet and the receiver's jitter buffer.
        const peerDelayMs = peerStats?.jitterBufferMs == null ? null : peerStats.jitterBufferMs + peerStats.ptimeMs;
        onStats?.({
          ...engineStats,
          playback: playStats,
          sampleRate: ctx.sampleRate,
          hardwareLatencyMs,
          ...echo,
          peer: peerStats,
          peerDelayMs,
          latencyMs: playStats.latencyMs == null ? null : playStats.latencyMs + hardwareLatencyMs + (peerDelayMs ?? 0),
          // What latencyMs cannot exceed (worker.js: backlog + frames in flight + playback buffer).
          latencyBoundMs: engineStats.latencyBoundMs == null ? null : engineStats.latencyBoundMs + hardwareLatencyMs + (peerDelayMs ?? 0),
          adapter: this.model?.adapter,
        });
      };
      if (peer) {
        poll = setInterval(async () => {
          peerStats = (await peer.stats().catch(() => null)) ?? peerStats;
        }, 500);
      }
      playback.port.onmessage = (e) => {
        playStats = e.data;
        emit();
      };
      this._listeners.stats = (m) => {
        const { event, ...s } = m;
        engineStats = s;
        emit();
      };
      this._listeners.text = (m) => onText?.(m.text, m);
      this._listeners.step = onStep ? (m) => onStep(m) : null;
      this._listeners.error = (m) => {
        const err = engineError(m.error);
        this.stop().catch(() => {});
        onError?.(err);
      };
      await this._call("startConversation", { capture: toWorker.port2, playback: fromWorker.port2, record, steps: !!onStep }, [toWorker.port2, fromWorker.port2]);
      ctx.createMediaStreamSource(stream).connect(capture);
      await ctx.resume();
      this._audio = { ctx, stream, capture, playback, peer, poll };
      const track = stream.getAudioTracks()[0];
      return { sampleRate: ctx.sampleRate, settings: track?.getSettings?.() ?? {}, label: track?.label ?? "", ...echo };
    } catch (e) {
      clearInterval(poll);
      peer?.close();
      stream.getTracks().forEach((t) => t.stop());
      await ctx?.close().catch(() => {});
      throw e.code ? e : fail("audio", `The audio pipeline could not be started: ${e?.message ?? e}`);
    }
  }

  /** Stop the conversation (microphone off). */
  async stop() {
    const a = this._audio;
    this._audio = null;
    if (!a) return;
    a.stream.getTracks().forEach((t) => t.stop());
    clearInterval(a.poll);
    a.peer?.close();
    if (!this._disposed) await this._call("stopConversation").catch(() => {});
    await a.ctx.close().catch(() => {});
    this._listeners.text = this._listeners.stats = this._listeners.error = this._listeners.step = null;
  }

  /**
   * Both sides of the last recorded conversation as a stereo 24 kHz WAV Blob (left: you, right:
   * the model, on the microphone's timeline), or null. `{ raw: true }` gives the tracks instead:
   * `{ user: Float32Array, model: Float32Array, processed: Int32Array }` (frames the model ran).
   */
  recording({ raw = false } = {}) {
    return this._call(raw ? "recordingData" : "recording");
  }
}

// A local folder as [{ name, file }]: a FileList / File[] or a FileSystemDirectoryHandle.
async function localFiles(source) {
  if (source && typeof source.values === "function" && source.kind === "directory") {
    const out = [];
    for await (const h of source.values()) if (h.kind === "file") out.push({ name: h.name, file: await h.getFile() });
    return out;
  }
  const list = Array.from(source ?? []);
  if (!list.length || !list.every((f) => f instanceof File)) {
    throw fail("input", "load() takes a model URL, a list of Files or a directory handle");
  }
  return list.map((f) => ({ name: f.name, file: f }));
}
