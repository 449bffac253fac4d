// The page: model picker, talk/stop, transcript, meters, stats, settings, benchmark, errors.
// Everything heavy happens in the engine worker behind parle.js; this thread only draws.
// URL parameters: ?model=URL (preselect a model directory), ?mimi (load only Mimi: loopback),
// ?autoload, ?f32, ?nosubgroups.
//
// Nothing leaves before the user asks: opening the page contacts only its own origin. Another
// origin (Hugging Face for the presets, a ?model= URL elsewhere) is asked about a model's sizes
// only once the user picks the model or presses Load; ?autoload loads at once only from the
// page's own origin, and for another one names it and waits for Load.

import { createEngine } from "./parle.js";
import { formatBytes as fmtBytes } from "./format.js";
import { captionsView } from "./captions-view.js";
import { translateView } from "./translate-view.js";

const $ = (id) => document.getElementById(id);
const HF = "https://huggingface.co/kyutai";

// Kyutai's published repositories (sizes are approximate until the download starts).
const PRESETS = [
  { id: "moshiko-q4", label: "Moshiko (male voice), MLX 4-bit", url: `${HF}/moshiko-mlx-q4/resolve/main/`, gb: 4.7, gpuGb: 5 },
  { id: "moshika-q4", label: "Moshika (female voice), MLX 4-bit", url: `${HF}/moshika-mlx-q4/resolve/main/`, gb: 4.7, gpuGb: 5 },
  { id: "moshiko-q8", label: "Moshiko, MLX 8-bit", url: `${HF}/moshiko-mlx-q8/resolve/main/`, gb: 8.6, gpuGb: 9 },
  { id: "moshika-q8", label: "Moshika, MLX 8-bit", url: `${HF}/moshika-mlx-q8/resolve/main/`, gb: 8.6, gpuGb: 9 },
  { id: "moshiko-gguf", label: "Moshiko, candle Q8_0 (GGUF)", url: `${HF}/moshiko-candle-q8/resolve/main/`, gb: 8.6, gpuGb: 9 },
  { id: "stt-1b", label: "Kyutai STT 1B, English + French (captions)", url: `${HF}/stt-1b-en_fr/resolve/main/`, gb: 2.4, gpuGb: 2.5 },
  { id: "stt-2.6b", label: "Kyutai STT 2.6B, English (captions)", url: `${HF}/stt-2.6b-en/resolve/main/`, gb: 5.7, gpuGb: 6 },
  // Hibiki (French → English): published in bf16 only; "Weights on the GPU" converts at load.
  { id: "hibiki-1b", label: "Kyutai Hibiki 1B, French → English (translate; bf16, PyTorch)", url: `${HF}/hibiki-1b-pytorch-bf16/resolve/main/`, gb: 4.0, gpuGb: 4 },
  { id: "hibiki-1b-mlx", label: "Kyutai Hibiki 1B, French → English (translate; bf16, MLX)", url: `${HF}/hibiki-1b-mlx-bf16/resolve/main/`, gb: 4.0, gpuGb: 4 },
  { id: "hibiki-2b", label: "Kyutai Hibiki 2B, French → English (translate; bf16, PyTorch)", url: `${HF}/hibiki-2b-pytorch-bf16/resolve/main/`, gb: 6.0, gpuGb: 6.5 },
  { id: "hibiki-2b-mlx", label: "Kyutai Hibiki 2B, French → English (translate; bf16, MLX)", url: `${HF}/hibiki-2b-mlx-bf16/resolve/main/`, gb: 6.6, gpuGb: 6.5 },
  { id: "mimi", label: "Mimi loopback (the codec alone: hear yourself through it)", url: `${HF}/moshiko-mlx-q4/resolve/main/`, gb: 0.39, gpuGb: 0.5, mimiOnly: true },
  { id: "custom", label: "Custom URL…" },
  { id: "local", label: "Files on this computer…" },
];

let engine = null;
let info = null; // the loaded model
let lastLoad = null; // { source, options } to reload after an engine restart
let talking = false;
let recorded = false;
let captions = null; // the Captions view (STT models)
let translate = null; // the Translate view (Hibiki models)

// What a model kind is called on the page.
const KIND_NAMES = { moshi: "Moshi", stt: "Kyutai STT (captions)", hibiki: "Kyutai Hibiki (translate)", mimi: "Mimi loopback" };

// The view a loaded model's kind gets (null: none loaded): Captions for STT, Translate for
// Hibiki, else the conversation.
function showMode(kind) {
  captions.show(kind === "stt");
  translate.show(kind === "hibiki", info);
}

// ---- errors -----------------------------------------------------------------------------------

const TITLES = {
  "no-webgpu": "This browser has no WebGPU",
  "no-adapter": "WebGPU found no GPU adapter",
  limits: "This GPU is too small for parle",
  wasm: "The parle WebAssembly module could not be loaded",
  gpu: "The GPU failed",
  "device-lost": "The GPU device was lost",
  oom: "The GPU ran out of memory",
  download: "The download failed",
  quota: "Not enough storage for this model",
  storage: "The browser's storage failed",
  config: "The model's config.json is wrong",
  weights: "The model files are damaged or do not match",
  "mic-denied": "Microphone access was denied",
  "no-mic": "No usable microphone",
  audio: "The audio pipeline failed",
};

function showError(e, where = "") {
  const code = e?.code ?? "engine";
  $("error-title").textContent = `${TITLES[code] ?? "Something went wrong"}${where ? ` (${where})` : ""}`;
  let detail = String(e?.message ?? e);
  if (code === "oom") detail += "\nTry a smaller model (4-bit), close other GPU-heavy tabs, or restart the engine.";
  if (code === "device-lost") detail += "\nRestart the engine: the model loads again from the browser's storage, without a download.";
  $("error-detail").textContent = detail;
  $("error-reload").hidden = !["device-lost", "oom", "gpu"].includes(code);
  $("error").hidden = false;
  $("error").dataset.code = code;
}

function clearError() {
  $("error").hidden = true;
}

function setStatus(id, text, cls = "") {
  $(id).textContent = text;
  $(id).className = `status ${cls}`.trim();
}


function fmtTime(s) {
  if (s == null || !Number.isFinite(s)) return "";
  if (s < 60) return `${Math.ceil(s)} s`;
  return `${Math.floor(s / 60)} min ${Math.ceil(s % 60)} s`;
}

// ---- the engine ---------------------------------------------------------------------------------

async function startEngine() {
  clearError();
  engine?.dispose();
  engine = null;
  setStatus("gpu-status", "Opening the GPU…");
  $("model-load").disabled = true;
  $("bench-run").disabled = true;
  try {
    engine = await createEngine({ forceF32: $("opt-f32").checked, noSubgroups: $("opt-nosg").checked });
  } catch (e) {
    setStatus("gpu-status", TITLES[e.code] ?? "No usable GPU.", "bad");
    showError(e);
    return false;
  }
  window.parleApp.engine = engine;
  const a = engine.gpu.adapter;
  const name = a.name;
  setStatus(
    "gpu-status",
    `${name}${a.software ? " — a software (CPU) adapter: the Mimi loopback works, Moshi will be far slower than real time" : ""}`,
    a.software ? "warn" : "ok",
  );
  $("gpu-report").textContent = engine.gpu.report;
  $("version").textContent = engine.gpu.version;
  $("st-adapter").textContent = `${name}${a.software ? " (software)" : ""}`;
  $("model-load").disabled = false;
  $("bench-run").disabled = false;
  updateModelNote();
  return true;
}

async function restartEngine() {
  await stopTalking();
  if (!(await startEngine())) return;
  if (lastLoad) await loadModel(lastLoad);
}

// ---- the model --------------------------------------------------------------------------------

function currentPreset() {
  return PRESETS.find((p) => p.id === $("model-pick").value);
}

async function updateModelNote() {
  const p = currentPreset();
  $("custom-row").hidden = p.id !== "custom";
  $("local-row").hidden = p.id !== "local";
  $("model-dir").hidden = !("showDirectoryPicker" in window);
  let note = "";
  if (p.gb) {
    note = `Download ≈ ${p.gb} GB (once; kept in this browser's storage), GPU memory ≈ ${p.gpuGb} GB.`;
    const a = engine?.gpu?.adapter;
    if (a) {
      note += ` This GPU binds buffers up to ${fmtBytes(a.maxBufferSize)}${a.software ? " and is a software adapter" : ""}.`;
    }
  } else if (p.id === "custom") {
    note = "A directory laid out like a Kyutai Hugging Face repository (config.json optional; model.safetensors, the Mimi tokenizer file, tokenizer_spm_32k_3.model). With `npm start -- --models DIR`, a folder of DIR is at models/NAME/.";
  } else {
    note = "Pick the folder of a downloaded model: its files are read in place, never uploaded or copied.";
  }
  $("model-note").textContent = note;
  inspectModel(p);
  try {
    const est = await navigator.storage?.estimate?.();
    if (est?.quota) $("storage-status").textContent = `Browser storage for this site: ${fmtBytes(est.usage)} used of ${fmtBytes(est.quota)}.`;
  } catch {}
}

// Ask the server what the chosen model needs (its files' sizes, what is already stored) and
// show it against what the adapter offers; the preset's approximate figures stay if it cannot
// be asked (offline, CORS).
let inspecting = 0;
async function inspectModel(p) {
  if (!engine || p.id === "local") return;
  let req;
  try {
    req = modelSource();
  } catch {
    return; // no URL entered yet
  }
  const url = req.source;
  // The loaded model needs no question (and the conversation's request log stays clean).
  if (info && lastLoad?.source === url && lastLoad?.options?.quant === req.options.quant) return;
  if (!userChose && !isSameOrigin(url)) {
    $("model-note").textContent += ` The files come from ${new URL(url, location.href).origin}: its sizes are asked for when you pick this model or press Load, not before.`;
    return;
  }
  const ticket = ++inspecting;
  let r;
  try {
    r = await engine.inspect(url, { mimiOnly: req.options.mimiOnly, quant: req.options.quant });
  } catch (e) {
    if (ticket === inspecting && p.id === "custom") $("model-note").textContent = `The server could not be asked about this model (${e.message}); a model already in this browser's storage still loads.`;
    return;
  }
  if (ticket !== inspecting || r.bytes == null) return;
  const a = engine.gpu.adapter;
  const stored = r.bytes - r.toDownload;
  $("model-note").textContent =
    `${KIND_NAMES[r.kind] ?? r.kind}: ${r.files.length} file${r.files.length > 1 ? "s" : ""}, ${fmtBytes(r.bytes)}` +
    (r.toDownload === 0 ? " (all in this browser's storage: no download)" : `, ${fmtBytes(r.toDownload)} to download${stored > 0 ? ` (${fmtBytes(stored)} already stored)` : ""}`) +
    `. GPU memory ≈ ${fmtBytes(r.gpuBytes)}${req.options.quant ? ` (linear weights converted to ${req.options.quant} at load)` : ""}; this GPU allows buffers up to ${fmtBytes(a.maxBufferSize)} (browsers do not say how much memory a GPU has)` +
    `${a.software ? "; it is a software adapter: far slower than real time" : ""}.`;
  $("model-note").dataset.inspected = url;
  $("model-note").dataset.quant = req.options.quant ?? "";
}

function modelSource() {
  const req = modelRequest();
  // "Weights on the GPU": a bf16/f32 LM converted at load (parle run --quant).
  const quant = $("model-quant").value || undefined;
  if (quant && !req.options.mimiOnly) req.options.quant = quant;
  return req;
}

function modelRequest() {
  const p = currentPreset();
  if (p.id === "custom") {
    const url = $("model-url").value.trim();
    if (!url) throw Object.assign(new Error("Enter the URL of a model directory."), { code: "input" });
    return { source: url, options: { mimiOnly: new URLSearchParams(location.search).has("mimi") } };
  }
  if (p.id === "local") {
    const files = pickedDir ?? $("model-files").files;
    if (!files || (files.length === 0 && !pickedDir)) throw Object.assign(new Error("Pick a model folder first."), { code: "input" });
    return { source: files, options: {} };
  }
  return { source: p.url, options: { mimiOnly: !!p.mimiOnly } };
}

let pickedDir = null;

// The user chose the model source (picked a preset, typed a URL, pressed Load): from then on the
// page may ask its server about the model. Before that, only the page's own origin is asked.
let userChose = false;

function isSameOrigin(url) {
  try {
    return new URL(url, location.href).origin === location.origin;
  } catch {
    return false;
  }
}

function onProgress(p) {
  $("progress-box").hidden = false;
  const frac = p.total ? p.loaded / p.total : 0;
  $("progress").value = frac;
  if (p.phase === "download") {
    const rate = p.rate ? `, ${fmtBytes(p.rate)}/s` : "";
    const eta = p.eta != null && p.loaded < p.total ? `, ${fmtTime(p.eta)} left` : "";
    let text = `Downloading ${p.file}: ${fmtBytes(p.loaded)} of ${fmtBytes(p.total)} (${Math.round(frac * 100)} %${rate}${eta})`;
    // The bar follows all of the model's files when their sizes are known.
    const o = p.overall;
    if (o?.total) {
      $("progress").value = o.loaded / o.total;
      const left = o.eta != null && o.loaded < o.total ? `, ${fmtTime(o.eta)} left` : "";
      text += `\nAll files: ${fmtBytes(o.loaded)} of ${fmtBytes(o.total)} (${Math.round((100 * o.loaded) / o.total)} %${left})`;
    }
    $("progress-text").textContent = text;
  } else if (p.phase === "gpu") {
    $("progress-text").textContent = `Loading ${p.file} onto the GPU: ${Math.round(frac * 100)} %`;
  } else {
    $("progress-text").textContent = `${p.phase}: ${p.file}`;
  }
}

async function loadModel(req) {
  clearError();
  await stopTalking();
  $("model-load").disabled = $("talk").disabled = true;
  setStatus("model-status", "Loading…");
  const codebooks = Number($("set-codebooks").value) || undefined;
  const t0 = performance.now();
  try {
    info = await engine.load(req.source, { ...req.options, codebooks, onProgress, sampling: userSampling });
    lastLoad = req;
    showSampling(info.sampling);
    const what = info.kind === "mimi" ? `Mimi loopback (${info.codebooks} codebooks)` : KIND_NAMES[info.kind] ?? info.kind;
    setStatus(
      "model-status",
      `${what} loaded ${info.fromCache ? "from this browser's storage" : "after downloading"} in ${((performance.now() - t0) / 1000).toFixed(1)} s ` +
        `(GPU upload ${(info.loadMs / 1000).toFixed(1)} s, shader compilation ${((info.warmupMs ?? 0) / 1000).toFixed(1)} s): ` +
        `${fmtBytes(info.fileBytes)} of files, ${fmtBytes(info.gpuBytes)} on the GPU.`,
      "ok",
    );
    $("talk").disabled = false;
    showMode(info.kind);
    $("progress-box").hidden = true;
  } catch (e) {
    info = null;
    showMode(null);
    setStatus("model-status", "No model loaded.", "bad");
    showError(e, "loading the model");
  } finally {
    $("model-load").disabled = false;
    updateModelNote();
  }
}

// ---- talking ------------------------------------------------------------------------------------

// The sampling inputs and their option names. Their values come from the engine: each model's
// own defaults (its config.json's lm_gen_config, else PyTorch LMGen's: crate/session), with the
// settings the user changed (`userSampling`, kept across loads) applied.
const SAMPLING_INPUTS = {
  "set-greedy": "greedy",
  "set-seed": "seed",
  "set-text-temp": "textTemperature",
  "set-text-topk": "textTopK",
  "set-audio-temp": "audioTemperature",
  "set-audio-topk": "audioTopK",
};
let userSampling = {};

function inputValue(id) {
  const el = $(id);
  return el.type === "checkbox" ? el.checked : Number(el.value);
}

function showSampling(s) {
  if (!s) return;
  for (const [id, key] of Object.entries(SAMPLING_INPUTS)) {
    if (id === "set-greedy") $(id).checked = !!s[key];
    else $(id).value = String(s[key]);
  }
}

async function applySettings(e) {
  if (!engine || !info) return;
  try {
    if (e?.target?.id === "set-codebooks") {
      if (info.kind !== "mimi" || talking) return;
      await engine.configure({ codebooks: Number($("set-codebooks").value) });
      info.codebooks = Number($("set-codebooks").value);
    } else if (SAMPLING_INPUTS[e?.target?.id]) {
      const key = SAMPLING_INPUTS[e.target.id];
      userSampling = { ...userSampling, [key]: inputValue(e.target.id) };
      // All the inputs: unchecking greedy brings the temperatures shown back.
      await engine.configure(Object.fromEntries(Object.entries(SAMPLING_INPUTS).map(([id, k]) => [k, inputValue(id)])));
    }
  } catch (err) {
    showError(err, "settings");
  }
}

function appendText(text) {
  const t = $("transcript");
  t.textContent += text;
  t.scrollTop = t.scrollHeight;
}

function showStats(s) {
  const ms = (x) => (x == null ? "–" : `${x.toFixed(1)} ms`);
  $("st-frame").textContent = s.frameMsMean == null ? "–" : `${ms(s.frameMsMean)} mean, ${ms(s.frameMs)} last (budget 80 ms)`;
  // Two frames can be in flight, so the latency is not the throughput: the real-time factor is
  // the time the pipeline spends per frame (service time) over 80 ms.
  $("st-rtf").textContent =
    s.rtf == null
      ? "–"
      : `${s.rtf.toFixed(2)} (this GPU runs this model at ${fmtSpeed(s.speed)}× real time), ${s.throughput.toFixed(1)} frames/s (real time: 12.5)`;
  const webrtc = s.peerDelayMs == null ? "" : `, ${Math.round(s.peerDelayMs)} ms WebRTC`;
  const bound = s.latencyBoundMs == null ? "" : `; at most ${Math.round(s.latencyBoundMs)} ms`;
  $("st-latency").textContent = s.latencyMs == null ? "–" : `${Math.round(s.latencyMs)} ms (incl. ${Math.round(s.hardwareLatencyMs)} ms audio hardware${webrtc}${bound})`;
  showSpeed(s);
  $("st-echo").textContent = s.echoPath ? `${s.echoPath}: ${s.echoPathReason}` : "–";
  const p = s.playback ?? {};
  $("st-buffer").textContent = p.bufferedMs == null ? "–" : `${Math.round(p.bufferedMs)} ms buffered, ${p.underruns} underruns, ${p.drops} drops, ${p.missed?.toFixed(1)} s missed`;
  $("st-dropped").textContent = s.dropped == null ? "–" : `${s.dropped} of ${s.framesIn} microphone frames (queue ${s.queued})`;
  $("st-frames").textContent = s.framesIn == null ? "–" : `${s.framesIn} / ${s.framesOut}`;
  if (s.levelIn != null) $("level-in").value = Math.max(-60, s.levelIn);
  if (s.levelOut != null) $("level-out").value = Math.max(-60, s.levelOut);
  window.parleApp.stats = s;
}

// 0.043 -> "0.043", 0.5 -> "0.50", 3.2 -> "3.2": two significant digits.
function fmtSpeed(x) {
  return x == null ? "–" : x >= 10 ? x.toFixed(0) : x.toPrecision(2);
}

// When the GPU is slower than real time, say so plainly, with what the page does about it and
// what the user can try. (A few frames first: the first ones include pipeline compilation.)
function showSpeed(s) {
  const slow = s.speed != null && s.speed < 1 && s.framesOut >= 3;
  $("slow").hidden = !slow;
  if (!slow) return;
  $("slow").textContent =
    `This GPU runs this model at ${fmtSpeed(s.speed)}× real time: it cannot keep up, so parle skips the microphone frames it has ` +
    `no time for (${s.dropped} of ${s.framesIn} so far) to keep Moshi's delay bounded: at most ${s.backlogBoundMs} ms of waiting, ` +
    `then two frames on the GPU and ${s.playbackBoundMs} ms of playback buffer (now ${s.latencyMs == null ? "–" : Math.round(s.latencyMs)} ms mic → speaker). ` +
    "Try a smaller or quantized model (4-bit), another GPU or browser, or close other tabs that use the GPU.";
}

async function startTalking() {
  if (talking || !info) return;
  clearError();
  $("talk").disabled = true;
  $("transcript").textContent = "";
  try {
    await engine.reset();
    const mic = await engine.startConversation({
      record: $("record").checked,
      echoPath: $("set-echo").value,
      onText: appendText,
      onStats: showStats,
      onError: (e) => {
        talking = false;
        updateTalkButtons();
        showError(e, "during the conversation");
      },
    });
    talking = true;
    window.parleApp.mic = mic;
  } catch (e) {
    showError(e, "starting the microphone");
  }
  updateTalkButtons();
}

async function stopTalking() {
  await captions?.stop();
  await translate?.stop();
  if (!talking) return;
  talking = false;
  await engine.stop();
  recorded = $("record").checked;
  updateTalkButtons();
}

function updateTalkButtons() {
  $("talk").disabled = talking || !info;
  $("stop").disabled = !talking;
  $("download").disabled = talking || !recorded;
  $("talk").setAttribute("aria-pressed", String(talking));
  document.body.classList.toggle("talking", talking);
}

async function downloadWav() {
  const blob = await engine.recording();
  if (!blob) return;
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = `parle-${new Date().toISOString().replace(/[:.]/g, "-")}.wav`;
  a.click();
  setTimeout(() => URL.revokeObjectURL(a.href), 10000);
}

// ---- benchmark ----------------------------------------------------------------------------------

async function runBench() {
  await stopTalking();
  $("bench-run").disabled = true;
  $("bench-out").textContent = "Running… (the first frames compile the GPU pipelines)";
  try {
    const profile = $("bench-profile").checked;
    const r = await engine.bench({ preset: $("bench-preset").value, frames: Number($("bench-frames").value) || 10, profile });
    $("bench-out").textContent =
      `${r.description}\n${r.adapter}${r.software ? " (software)" : ""}: ${r.frames} frames, mean ${r.meanMs.toFixed(1)} ms, ` +
      `p50 ${r.p50Ms.toFixed(1)} ms, min ${r.minMs.toFixed(1)} ms, max ${r.maxMs.toFixed(1)} ms; real-time factor ${r.rtf.toFixed(2)}\n` +
      `${r.dispatches} dispatches per frame, GPU memory ${fmtBytes(r.gpuBytes)}, load + first frame ${(r.loadMs / 1000).toFixed(1)} s` +
      (r.profile ? `\n\n${profileText(r.profile)}` : "");
    window.parleApp.bench = r;
    info = null; // the benchmark replaced the model
    showMode(null);
    setStatus("model-status", "The benchmark replaced the model: load it again to talk.");
    updateTalkButtons();
  } catch (e) {
    $("bench-out").textContent = "";
    showError(e, "benchmark");
  } finally {
    $("bench-run").disabled = false;
  }
}

// The benchmark's profile (engine.bench({ profile: true })): its table, headed by whether GPU
// times were measured (the adapter's timestamp-query) or only launches and bytes counted.
function profileText(p) {
  const head = p.timed
    ? `Profile: GPU time per part of the frame (timestamp queries), mean of ${p.frames} frames`
    : "Profile: GPU times unavailable — this GPU has no timestamp queries (timestamp-query); launches and bytes read only";
  return `${head}\n${p.table}`;
}

// ---- offline ------------------------------------------------------------------------------------

// One app version at a time (sw.js): this page keeps the build it was served, and a newer build,
// once the service worker has fetched and stored all of it, is offered here ("a new version is
// ready — reload") rather than mixed into a running page.
async function registerServiceWorker() {
  const build = window.PARLE_BUILD?.id ?? null;
  $("build").textContent = build ? `build ${build}` : "";
  window.parleApp.build = build;
  if (!("serviceWorker" in navigator)) {
    $("offline-status").textContent = "offline use not supported by this browser";
    return;
  }
  const sw = navigator.serviceWorker;
  let reg;
  try {
    reg = await sw.register("sw.js");
  } catch (e) {
    const hint = build ? "" : " (version.js is missing: build the app with npm run build:wasm)";
    $("offline-status").textContent = `offline cache unavailable (${e.message})${hint}`;
    return;
  }
  let reloading = false;
  const offer = () => {
    $("update").hidden = false;
  };
  const offerIfWaiting = () => {
    if (reg.waiting && sw.controller) offer();
  };
  reg.addEventListener("updatefound", () => {
    const w = reg.installing;
    w?.addEventListener("statechange", () => w.state === "installed" && offerIfWaiting());
  });
  offerIfWaiting();
  $("update-reload").onclick = async () => {
    reloading = true;
    $("update-reload").disabled = true;
    await stopTalking();
    if (reg.waiting) reg.waiting.postMessage({ type: "activate" });
    else location.reload(); // another tab already switched to the new version
  };
  sw.addEventListener("controllerchange", () => {
    if (reloading) location.reload();
    else sw.controller?.postMessage({ type: "status" });
  });
  sw.addEventListener("message", (e) => {
    if (e.data?.type !== "status") return;
    // Another tab switched to a newer build: this page's files are no longer what is served.
    if (build && e.data.build !== build) offer();
    $("offline-status").textContent = e.data.stored
      ? "the app works offline; downloaded models stay in this browser"
      : "the app could not be stored for offline use (the browser's storage is full): it needs the network";
    $("offline-status").dataset.stored = String(e.data.stored);
  });
  await sw.ready;
  sw.controller?.postMessage({ type: "status" });
  // A page left open still learns of a new version (the browser checks on navigations only).
  setInterval(() => reg.update().catch(() => {}), 3600 * 1000);
}

// ---- start-up -----------------------------------------------------------------------------------

function main() {
  window.parleApp = { engine: null, stats: null };
  captions = captionsView({
    $,
    engine: () => engine,
    echoPath: () => $("set-echo").value,
    onError: showError,
    onStats: showStats,
  });
  translate = translateView({
    $,
    engine: () => engine,
    echoPath: () => $("set-echo").value,
    onError: showError,
    onStats: showStats,
  });
  const params = new URLSearchParams(location.search);
  $("opt-f32").checked = params.has("f32");
  $("opt-nosg").checked = params.has("nosubgroups");
  for (const p of PRESETS) $("model-pick").append(new Option(p.label, p.id));
  if (params.has("model")) {
    $("model-pick").value = "custom";
    $("model-url").value = params.get("model");
  }
  const chosen = () => {
    userChose = true;
    updateModelNote();
  };
  $("model-pick").onchange = chosen;
  $("model-url").onchange = chosen;
  $("model-quant").onchange = chosen;
  $("model-load").onclick = () => {
    userChose = true;
    try {
      loadModel(modelSource());
    } catch (e) {
      showError(e);
    }
  };
  $("model-dir").onclick = async () => {
    try {
      pickedDir = await window.showDirectoryPicker();
      $("model-note").textContent = `Folder “${pickedDir.name}” chosen.`;
    } catch {}
  };
  $("model-files").onchange = () => (pickedDir = null);
  $("model-delete").onclick = async () => {
    await engine?.deleteCached();
    setStatus("model-status", info ? "Downloaded models deleted (the loaded one stays until reload)." : "Downloaded models deleted.");
    updateModelNote();
  };
  $("talk").onclick = startTalking;
  $("stop").onclick = stopTalking;
  $("download").onclick = downloadWav;
  $("error-close").onclick = clearError;
  $("error-reload").onclick = restartEngine;
  $("gpu-retry").onclick = restartEngine;
  $("self-test-run").onclick = async () => {
    setStatus("self-test", "Running a kernel on the GPU…");
    try {
      setStatus("self-test", await engine.selfTest(), "ok");
    } catch (e) {
      setStatus("self-test", e.message, "bad");
    }
  };
  $("bench-run").onclick = runBench;
  for (const el of document.querySelectorAll("#settings input")) el.onchange = applySettings;
  document.addEventListener("keydown", (e) => {
    if (e.code !== "Space" || e.repeat || e.target.closest("input, select, textarea, button, summary, a")) return;
    e.preventDefault();
    if (!$("captions-section").hidden) captions.running ? captions.stop() : captions.start();
    else if (!$("translate-section").hidden) translate.running ? translate.stop() : translate.start();
    else if (talking) stopTalking();
    else startTalking();
  });
  registerServiceWorker();
  updateModelNote();
  startEngine().then((ok) => {
    if (!ok || !params.has("autoload")) return;
    // Autoload from the page's own origin; another origin is named and waits for a click.
    if (!params.has("model") || isSameOrigin(params.get("model"))) $("model-load").click();
    else setStatus("model-status", `This link asks to load a model from ${new URL(params.get("model"), location.href).origin}. Nothing has been requested from it: press Load to download the model from there.`, "warn");
  });
}

main();
