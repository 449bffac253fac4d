// The engine worker: owns the wasm package, the WebGPU device, the model files and the frame loop.
// `parle.js` (the page side of the API) talks to it with requests {id, op, ...} answered by
// {id, ok: true, value} or {id, ok: false, error: {message, code, file}}, and events {event, ...}
// (progress, text, stats, error). During a conversation, microphone frames arrive straight from
// the capture worklet on a MessagePort and leave for the playback worklet on another: audio never
// goes through the page's thread.

import { openUrlModel, openLocalModel, inspectUrlModel, withRemoteHeader, listCached, deleteCached, StoreError } from "./store.js";

let pkg = null; // the wasm package's exports once loaded
let wasm = null; // the raw wasm exports (for the memory size)
let loading = null;
let options = { forceF32: false, noSubgroups: false };
let f16 = false; // the device uses shader-f16 (the KV caches are f16, else f32)
let model = null; // what engineLoad returned, plus how it was opened
let conv = null; // the running conversation
let stepping = false; // a step is running (engine.step or the conversation loop)

const FRAME = 1920;

class EngineError extends Error {
  constructor(code, message, file) {
    super(message);
    this.code = code;
    if (file) this.file = file;
  }
}

function wasmBytes() {
  return wasm?.memory?.buffer?.byteLength ?? 0;
}

function loadWasm() {
  loading ??= import("./pkg/parle.js")
    .then(async (m) => {
      wasm = await m.default();
      pkg = m;
    })
    .catch((e) => {
      loading = null; // let a later call retry
      throw new EngineError(
        "wasm",
        `The parle WebAssembly module could not be loaded: ${e?.message ?? e}. If you built parle yourself, ` +
          "build the package with `npm run build:wasm` (it goes to web/pkg/).",
      );
    });
  return loading;
}

// The wasm package's model-directory resolver, for the store (crate/web/model.rs): what to look
// for, and which file plays which part, by the same rules as the native `parle`.
function resolver() {
  return {
    lookups: (config) => JSON.parse(pkg.modelLookups(config ?? undefined)),
    resolve: (names, config, mimiOnly) => JSON.parse(pkg.resolveModel(JSON.stringify(names), config ?? undefined, !!mimiOnly)),
  };
}

// The storage module's errors as they are; anything else it throws is a storage failure.
function storageError(e) {
  return e instanceof StoreError ? e : new EngineError("storage", String(e?.message ?? e));
}

// ---- requests ----------------------------------------------------------------------------------

// The adapter report the page shows, written from gpuInfo's object (the facts of `parle info`).
function gpuReport(c, software) {
  const mib = (b) => `${Math.round(b / 1048576)} MiB`;
  const onOff = (on, available) => (on ? "on" : available ? "off (available, switched off)" : "not available");
  const l = c.limits;
  return [
    `adapter:            ${c.adapter}`,
    `backend:            ${c.backend} (browser WebGPU)`,
    `device type:        ${c.deviceType} (${software ? "software" : "hardware"})`,
    `driver:             ${c.driver || "-"}`,
    `shader-f16:         ${onOff(c.f16, c.f16Available)}`,
    `subgroups:          ${c.subgroups ? `on (size ${c.subgroupSize[0]}..${c.subgroupSize[1]})` : onOff(false, c.subgroupsAvailable)}`,
    `timestamp queries:  ${c.timestampQuery ? "yes" : "no"}`,
    `max storage binding: ${mib(l.maxStorageBufferBindingSize)}`,
    `max buffer size:    ${mib(l.maxBufferSize)}`,
    `storage buffers/stage: ${l.maxStorageBuffersPerShaderStage}`,
    `workgroup:          ${l.maxComputeInvocationsPerWorkgroup} invocations, x ≤ ${l.maxComputeWorkgroupSizeX}, ${l.maxComputeWorkgroupStorageSize} B shared, ${l.maxComputeWorkgroupsPerDimension} groups/dim`,
    `offset alignment:   storage ${l.minStorageBufferOffsetAlignment} B, uniform ${l.minUniformBufferOffsetAlignment} B`,
  ].join("\n");
}

async function init(opts) {
  options = { forceF32: !!opts.forceF32, noSubgroups: !!opts.noSubgroups };
  if (!navigator.gpu) {
    throw new EngineError(
      "no-webgpu",
      "WebGPU is not available in this browser's workers (navigator.gpu is undefined). Use a recent Chrome or Edge (113+), Safari 26+ or Firefox 141+; on Linux, Chrome needs chrome://flags/#enable-unsafe-webgpu.",
    );
  }
  let adapter = null;
  try {
    adapter = await navigator.gpu.requestAdapter({ powerPreference: "high-performance" });
  } catch {
    adapter = null;
  }
  if (!adapter) {
    throw new EngineError(
      "no-adapter",
      "WebGPU found no GPU adapter: the GPU may be blocklisted, hardware acceleration may be off, or the driver too old (chrome://gpu or about:support says why).",
    );
  }
  await loadWasm();
  let caps;
  try {
    caps = await pkg.gpuInfo(options.forceF32, options.noSubgroups);
  } catch (e) {
    throw new EngineError(e?.code ?? "gpu", String(e?.message ?? e));
  }
  f16 = caps.f16;
  const info = adapter.info ?? {};
  const software = caps.software || info.isFallbackAdapter === true || adapter.isFallbackAdapter === true;
  return {
    version: pkg.version(),
    caps: { ...caps, software },
    report: gpuReport(caps, software),
    adapter: {
      name: caps.adapter,
      vendor: info.vendor ?? "",
      architecture: info.architecture ?? "",
      description: info.description ?? "",
      software,
      maxBufferSize: caps.limits.maxBufferSize,
      maxStorageBufferBindingSize: caps.limits.maxStorageBufferBindingSize,
    },
    wasmBytes: wasmBytes(),
  };
}

async function load({ source, codebooks, storage, sampling, mimiOnly, warmup, cfg, quant }, post) {
  if (conv) throw new EngineError("busy", "stop the conversation before loading another model");
  await idle();
  await loadWasm();
  // Each report carries the wasm heap's size then (it only grows: where it grows is visible).
  const onProgress = (p) => post({ event: "progress", ...p, wasmBytes: wasmBytes() });
  let opened;
  try {
    opened =
      source.kind === "url"
        ? await openUrlModel(source.url, { onProgress, storage, mimiOnly, newHasher: () => new pkg.Sha256(), resolver: resolver() })
        : await openLocalModel(source.files, { onProgress, mimiOnly, resolver: resolver() });
  } catch (e) {
    throw storageError(e);
  }
  let info;
  try {
    const opts = JSON.stringify({ ...options, codebooks: codebooks ?? null, sampling: sampling ?? undefined, cfg: cfg ?? undefined, quant: quant ?? undefined });
    info = JSON.parse(
      await pkg.engineLoad(opts, opened.config ?? undefined, opened.files.mimi, opened.files.lm ?? undefined, opened.files.tokenizer ?? undefined),
    );
  } catch (e) {
    model = null;
    throw e;
  } finally {
    opened.close();
  }
  // One silent frame compiles every GPU pipeline now rather than in the conversation's first
  // frame (seconds on a software adapter); then the conversation starts afresh.
  if (warmup !== false) {
    const t0 = performance.now();
    await pkg.engineStep(new Float32Array(FRAME));
    pkg.engineReset();
    info.warmupMs = performance.now() - t0;
  }
  info.fromCache = opened.fromCache;
  info.fileBytes = opened.bytes;
  if (opened.verified) info.verified = opened.verified; // per file: "sha256" or "size"
  info.wasmBytes = wasmBytes();
  model = { info, source, codebooks, storage, mimiOnly, cfg, quant };
  return info;
}

// What loading a model URL would need, before downloading it: its files (size, bytes already
// stored), the bytes to download and the GPU memory it will take: crate/web's engineEstimate
// (the Rust estimate `parle info --model` prints) from config.json and the LM checkpoint's
// header, fetched with Range requests (a few KB for safetensors, from 1 MiB for GGUF).
async function inspect({ url, local, mimiOnly, quant }) {
  await loadWasm();
  if (local) return inspectLocal(local, mimiOnly, quant);
  let found;
  try {
    found = await inspectUrlModel(url, { mimiOnly, resolver: resolver() });
  } catch (e) {
    throw storageError(e);
  }
  const { config, model, files, lm } = found;
  const known = files.every((f) => f.size != null);
  const sum = (xs) => xs.reduce((a, b) => a + b, 0);
  const kind = model.kind;
  let gpu = null;
  if (known) {
    const options = JSON.stringify({ f16, quant: quant ?? null });
    const estimate = (file) => JSON.parse(pkg.engineEstimate(options, config, file));
    try {
      gpu = lm ? await withRemoteHeader(lm, estimate) : estimate(null);
    } catch (e) {
      throw e instanceof StoreError ? e : new EngineError(e?.code ?? "weights", String(e?.message ?? e), lm?.name);
    }
  }
  return {
    kind,
    io: model.io,
    sampling: model.sampling,
    files,
    bytes: known ? sum(files.map((f) => f.size)) : null,
    toDownload: known ? sum(files.map((f) => Math.max(0, f.size - f.stored))) : null,
    gpuBytes: gpu?.total ?? null,
    gpu,
  };
}

// inspect() of local files: their sizes, nothing to download, and the estimate from config.json
// and the LM header read in place (File.slice).
async function inspectLocal(local, mimiOnly, quant) {
  let opened;
  try {
    opened = await openLocalModel(local, { mimiOnly, resolver: resolver() });
  } catch (e) {
    throw storageError(e);
  }
  const { config, model, files: readers } = opened;
  const files = Object.entries(readers)
    .filter(([, f]) => f)
    .map(([role, f]) => ({ role, name: f.name, size: f.size, stored: f.size }));
  let gpu;
  try {
    gpu = JSON.parse(pkg.engineEstimate(JSON.stringify({ f16, quant: quant ?? null }), config, readers.lm));
  } catch (e) {
    throw new EngineError(e?.code ?? "weights", String(e?.message ?? e), readers.lm?.name);
  }
  return {
    kind: model.kind,
    io: model.io,
    sampling: model.sampling,
    files,
    bytes: files.reduce((s, f) => s + f.size, 0),
    toDownload: 0,
    gpuBytes: gpu.total,
    gpu,
  };
}

async function step(pcm) {
  if (!model) throw new EngineError("no-model", "no model is loaded: call load() first");
  if (conv) throw new EngineError("busy", "a conversation is running: stop() it before calling step()");
  if (!(pcm instanceof Float32Array) || pcm.length !== FRAME) {
    throw new EngineError("input", `step() takes a Float32Array of ${FRAME} samples at 24 kHz, got ${pcm?.length ?? typeof pcm}`);
  }
  await idle();
  if (stepping) throw new EngineError("busy", "a frame is already running: await it first");
  stepping = true;
  try {
    return await pkg.engineStep(pcm);
  } finally {
    stepping = false;
  }
}

// Hibiki: the end-of-input frame (after the last frame of the speech to translate).
async function stepEndOfInput() {
  if (!model) throw new EngineError("no-model", "no model is loaded: call load() first");
  if (conv) throw new EngineError("busy", "a conversation is running: stop() it before calling endOfInput()");
  if (model.info.kind !== "hibiki") throw new EngineError("input", `endOfInput() is for Hibiki models; this one is "${model.info.kind}"`);
  await idle();
  stepping = true;
  try {
    return await pkg.engineStepEndOfInput();
  } finally {
    stepping = false;
  }
}

let pendingSampling = null; // sampling settings given during a conversation, applied between frames

async function configure(opts) {
  if (!model) throw new EngineError("no-model", "no model is loaded: call load() first");
  // An unknown option or a bad value is an `input` error now, not between two frames later.
  pkg.engineCheckConfigure(JSON.stringify(opts));
  const { codebooks, ...sampling } = opts;
  if (conv && (codebooks === undefined || codebooks === null || codebooks === model.info.codebooks)) {
    pendingSampling = { ...pendingSampling, ...sampling };
    return;
  }
  if (conv) throw new EngineError("busy", "stop the conversation before changing the codebooks");
  await idle();
  // Mimi's codebook count is fixed at load: reload (from storage, no download) to change it.
  if (opts.codebooks !== undefined && opts.codebooks !== null && opts.codebooks !== model.info.codebooks) {
    if (model.info.kind !== "mimi") {
      throw new EngineError("input", `Moshi always uses its ${model.info.codebooks} codebooks; codebooks applies to the Mimi loopback`);
    }
    const { source, storage, mimiOnly } = model;
    await load({ source, storage, mimiOnly, codebooks: opts.codebooks }, () => {});
  }
  pkg.engineConfigure(JSON.stringify(opts));
}

function levelDb(x) {
  let s = 0;
  for (let i = 0; i < x.length; i++) s += x[i] * x[i];
  return 10 * Math.log10(s / Math.max(1, x.length) + 1e-12);
}

// ---- the conversation ------------------------------------------------------------------------

// Bounded latency when the GPU is slower than real time. Frames arrive every 80 ms whatever the
// GPU does; a frame that would wait behind MAX_BACKLOG newer ones is dropped (and counted), the way
// Kyutai's client trims its playback buffer back to its target when it grows too long: the model
// skips what it could not hear in time rather than falling further and further behind. So a frame
// waits at most MAX_BACKLOG * 80 ms before the GPU takes it, then at most MAX_IN_FLIGHT frame
// times on the GPU (it may queue behind the frame before it): mic -> speaker latency is at most
// BACKLOG_BOUND_MS + MAX_IN_FLIGHT * (the GPU's frame time) + the playback buffer (<= 240 ms,
// playback-worklet.js) + the audio hardware's latency; with a GPU that keeps up (a frame in
// <= 80 ms), at most 640 ms + the hardware's. The stats report the bound with the measured frame
// time, and the frames dropped.
const MAX_BACKLOG = 3;
const FRAME_MS = 80;
const BACKLOG_BOUND_MS = MAX_BACKLOG * FRAME_MS;
const PLAYBACK_BOUND_MS = 240; // playback-worklet.js: 80 ms + cushion (<= 80) + extra (<= 80)

function startConversation({ capture, playback, record, steps }, post) {
  if (!model) throw new EngineError("no-model", "no model is loaded: call load() first");
  stopConversation();
  conv = {
    capture,
    playback,
    post,
    queue: [],
    framesIn: 0,
    framesOut: 0,
    dropped: 0,
    times: [], // the last 50 frames' latencies (push to result), ms
    service: [], // and their service times, ms
    waits: [], // and how long they waited for the GPU (arrival to push), ms
    lastOut: null,
    levelIn: -100,
    levelOut: -100,
    started: performance.now(),
    record: record ? { user: [], model: [], processed: [] } : null,
    steps: !!steps, // post every step's text token and endOfTurn (the page's captions)
    timer: setInterval(() => postStats(), 250),
  };
  capture.onmessage = (e) => {
    const m = e.data;
    if (!conv || m.type !== "frame") return;
    m.index = conv.framesIn++;
    m.arrived = performance.now();
    if (conv.record) {
      // Both tracks stay on the microphone's timeline: a dropped frame is silence on Moshi's.
      conv.record.user.push(m.samples.slice());
      conv.record.model.push(null);
    }
    conv.queue.push(m);
    if (conv.queue.length > MAX_BACKLOG) {
      conv.queue.shift();
      conv.dropped++;
    }
    // While the loop awaits a readback, a frame that arrives is submitted at once (the session
    // is not held during the wait); otherwise the loop starts and pushes it.
    if (pumpActive && pumpConv === conv) {
      try {
        pushArrived(conv);
      } catch (err) {
        conv.post({ event: "error", error: serialize(err) });
        stopConversation();
      }
    }
    pump();
  };
}

// Resolves when no conversation frame is running (a frame still finishes after stop()).
let pumping = Promise.resolve();

async function idle() {
  await pumping;
}

// Frames pushed to the GPU and not yet read back, the one being pulled included: the session's
// double-buffered readback allows two, so the next frame's GPU work overlaps the previous frame's
// readback (mapAsync takes milliseconds to resolve even when the GPU is done).
const MAX_IN_FLIGHT = 2;

// One loop at a time, across conversations too: a stopped conversation's loop still pulls its
// frames in flight, and the next conversation's loop starts after it.
let pumpActive = false;
let pumpConv = null; // the conversation the running loop serves
let inFlight = []; // its pushed frames, oldest first (inFlight[0] is the one being pulled)

// Push the frames that have arrived, up to MAX_IN_FLIGHT in flight.
function pushArrived(c) {
  while (conv === c && c.queue.length && inFlight.length < MAX_IN_FLIGHT) {
    const m = c.queue.shift();
    if (pendingSampling) {
      pkg.engineConfigure(JSON.stringify(pendingSampling));
      pendingSampling = null;
    }
    c.levelIn = levelDb(m.samples);
    m.pushed = performance.now();
    pkg.enginePush(m.samples);
    inFlight.push(m);
  }
}

async function pump() {
  const c = conv;
  if (!c || pumpActive) return;
  pumpActive = true;
  pumpConv = c;
  inFlight = [];
  stepping = true;
  let done;
  pumping = new Promise((r) => (done = r));
  let pulling = false;
  try {
    for (;;) {
      // Push what has arrived, then await the oldest frame; frames arriving during the await are
      // pushed by the capture handler.
      pushArrived(c);
      if (!inFlight.length) break;
      const m = inFlight[0];
      pulling = true;
      const out = await pkg.enginePull();
      pulling = false;
      inFlight.shift();
      // Stopped: still pull the frames in flight (a later step() must not get them), unused.
      if (conv !== c) continue;
      const now = performance.now();
      // Latency: push to result. Service: the time the pipeline spent on this frame alone (from
      // its push or the previous result, whichever is later), what the real-time factor needs.
      c.times.push(now - m.pushed);
      c.service.push(now - Math.max(m.pushed, c.lastOut ?? 0));
      c.waits.push(m.pushed - m.arrived);
      c.lastOut = now;
      for (const xs of [c.times, c.service, c.waits]) if (xs.length > 50) xs.shift();
      if (c.record) {
        c.record.processed.push(m.index);
        if (out.pcm) c.record.model[m.index] = out.pcm.slice();
      }
      if (out.pcm) {
        c.levelOut = levelDb(out.pcm);
        c.framesOut++;
        c.playback.postMessage({ type: "frame", samples: out.pcm, time: m.time }, [out.pcm.buffer]);
      }
      if (out.text) c.post({ event: "text", text: out.text, textToken: out.textToken, frame: out.frame });
      if (c.steps) c.post({ event: "step", text: out.text, textToken: out.textToken, endOfTurn: out.endOfTurn ?? null, frame: out.frame, audioTokens: out.audioTokens ? Array.from(out.audioTokens) : null });
    }
  } catch (e) {
    if (conv === c) {
      c.post({ event: "error", error: serialize(e) });
      stopConversation();
    }
    // Leave no frame in flight for a later step() (a failed pull already took its frame; on a
    // lost device these fail at once).
    for (let i = pulling ? 1 : 0; i < inFlight.length; i++) await pkg.enginePull().catch(() => {});
  } finally {
    pumpActive = false;
    pumpConv = null;
    inFlight = [];
    stepping = false;
    done();
    if (conv && conv !== c && conv.queue.length) pump();
  }
}

function postStats() {
  const c = conv;
  if (!c) return;
  const mean = (xs) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : null);
  const max = (xs) => (xs.length ? Math.max(...xs) : null);
  const latency = mean(c.times);
  const service = mean(c.service);
  const frameMsMax = max(c.times);
  c.post({
    event: "stats",
    framesIn: c.framesIn,
    framesOut: c.framesOut,
    dropped: c.dropped,
    queued: c.queue.length,
    frameMs: c.times.length ? c.times[c.times.length - 1] : null,
    frameMsMean: latency,
    frameMsMax,
    waitMsMean: mean(c.waits),
    waitMsMax: max(c.waits),
    serviceMsMean: service,
    throughput: service ? 1000 / service : null,
    rtf: service === null ? null : service / FRAME_MS,
    // How fast this GPU runs this model: 1 is real time, 0.05 twenty times too slow.
    speed: service ? FRAME_MS / service : null,
    backlogBoundMs: BACKLOG_BOUND_MS,
    playbackBoundMs: PLAYBACK_BOUND_MS,
    // Mic -> speaker, without the audio hardware and WebRTC (parle.js adds them): the backlog,
    // the frames in flight at the slowest frame time seen lately, the playback buffer.
    latencyBoundMs: frameMsMax === null ? null : BACKLOG_BOUND_MS + MAX_IN_FLIGHT * Math.max(FRAME_MS, max(c.service)) + PLAYBACK_BOUND_MS,
    levelIn: c.levelIn,
    levelOut: c.levelOut,
    wasmBytes: wasmBytes(),
    gpuBytes: pkg?.engineGpuBytes?.() ?? null,
    seconds: (performance.now() - c.started) / 1000,
  });
}

function stopConversation() {
  const c = conv;
  if (!c) return null;
  postStats();
  clearInterval(c.timer);
  c.capture.onmessage = null;
  c.capture.close();
  c.playback.close();
  conv = null;
  return c.record;
}

let lastRecording = null;

// A stereo 16-bit WAV: left the microphone, right the model, frame-aligned at 24 kHz.
function wav(rec) {
  const n = rec.user.length * FRAME;
  const buf = new ArrayBuffer(44 + n * 4);
  const v = new DataView(buf);
  const str = (o, s) => [...s].forEach((ch, i) => v.setUint8(o + i, ch.charCodeAt(0)));
  str(0, "RIFF");
  v.setUint32(4, 36 + n * 4, true);
  str(8, "WAVE");
  str(12, "fmt ");
  v.setUint32(16, 16, true);
  v.setUint16(20, 1, true);
  v.setUint16(22, 2, true);
  v.setUint32(24, 24000, true);
  v.setUint32(28, 24000 * 4, true);
  v.setUint16(32, 4, true);
  v.setUint16(34, 16, true);
  str(36, "data");
  v.setUint32(40, n * 4, true);
  const q = (x) => Math.max(-32768, Math.min(32767, Math.round(x * 32767)));
  let o = 44;
  const silence = new Float32Array(FRAME);
  for (let f = 0; f < rec.user.length; f++) {
    const a = rec.user[f];
    const b = rec.model[f] ?? silence;
    for (let i = 0; i < FRAME; i++) {
      v.setInt16(o, q(a[i]), true);
      v.setInt16(o + 2, q(b[i]), true);
      o += 4;
    }
  }
  return new Blob([buf], { type: "audio/wav" });
}

// ---- the benchmark -----------------------------------------------------------------------------

async function bench(opts, post) {
  if (conv) throw new EngineError("busy", "stop the conversation before running the benchmark");
  await idle();
  await loadWasm();
  const onProgress = (p) => post({ event: "progress", ...p });
  onProgress({ phase: "bench", file: opts.preset, loaded: 0, total: 1 });
  const r = JSON.parse(await pkg.engineBench(JSON.stringify({ ...options, ...opts })));
  model = null; // the benchmark replaced the session
  return r;
}

// ---- plumbing ----------------------------------------------------------------------------------

function serialize(e) {
  return {
    message: String(e?.message ?? e),
    code: e?.code ?? (e?.name === "QuotaExceededError" ? "quota" : "engine"),
    file: e?.file,
    name: e?.name,
  };
}

onmessage = async (e) => {
  const m = e.data;
  const post = (x) => postMessage(x);
  let value;
  try {
    switch (m.op) {
      case "init":
        value = await init(m);
        break;
      case "selfTest":
        await loadWasm();
        value = await pkg.gpuSelfTest(options.forceF32, options.noSubgroups);
        break;
      case "load":
        value = await load(m, post);
        break;
      case "inspect":
        value = await inspect(m);
        break;
      case "configure":
        value = await configure(m.options);
        break;
      case "step": {
        const out = m.endOfInput ? await stepEndOfInput() : await step(m.pcm);
        const transfer = [out.pcm?.buffer, out.audioTokens?.buffer].filter(Boolean);
        postMessage({ id: m.id, ok: true, value: out }, transfer);
        return;
      }
      case "words":
        if (!model) throw new EngineError("no-model", "no model is loaded: call load() first");
        value = JSON.parse(pkg.engineWords(Uint32Array.from(m.tokens ?? [])));
        break;
      case "reset":
        if (!model) throw new EngineError("no-model", "no model is loaded: call load() first");
        await idle();
        pkg.engineReset();
        break;
      case "dispose":
        stopConversation();
        pkg?.engineDispose();
        model = null;
        break;
      case "startConversation":
        startConversation(m, post);
        break;
      case "stopConversation":
        lastRecording = stopConversation() ?? lastRecording;
        break;
      case "recording":
        value = lastRecording && lastRecording.user.length ? wav(lastRecording) : null;
        break;
      case "recordingData": {
        // The raw tracks (tests): user and model frames, and which frames the model processed.
        const r = lastRecording;
        const cat = (fs) => {
          const out = new Float32Array(fs.length * FRAME);
          fs.forEach((f, i) => f && out.set(f, i * FRAME));
          return out;
        };
        value = r ? { user: cat(r.user), model: cat(r.model), processed: Int32Array.from(r.processed) } : null;
        break;
      }
      case "loseDevice": // tests: simulate a lost GPU device
        pkg?.engineLoseDevice();
        break;
      case "memory":
        value = { wasmBytes: wasmBytes() };
        break;
      case "cached":
        value = await listCached();
        break;
      case "deleteCached":
        await deleteCached(m.url);
        break;
      case "bench":
        value = await bench(m.options ?? {}, post);
        break;
      default:
        throw new EngineError("input", `unknown request ${m.op}`);
    }
    postMessage({ id: m.id, ok: true, value });
  } catch (err) {
    postMessage({ id: m.id, ok: false, error: serialize(err) });
  }
};
