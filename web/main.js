// The page: owns the DOM, the microphone and the AudioContext. All GPU work happens in
// worker.js (the wasm package runs there, so a long GPU frame never blocks the page).
//
// Messages from the worker: {type: "version", version}, {type: "gpu", report},
// {type: "self-test", ok, text}, {type: "error", kind, title, detail}, {type: "stats", ...}.
// Messages to the worker: {type: "gpu", forceF32, noSubgroups}, {type: "audio", capture, playback}
// (two MessagePorts wired to the worklets), {type: "audio-stop"}.

const $ = (id) => document.getElementById(id);

// `where` is "gpu" or "audio": each section has its own error box.
function showError(where, title, detail) {
  const box = $(`${where}-error`);
  box.querySelector("strong").textContent = title;
  box.querySelector("p").textContent = detail;
  box.hidden = false;
}

function clearError(where) {
  $(`${where}-error`).hidden = true;
}

function setStatus(id, text, cls = "") {
  const el = $(id);
  el.textContent = text;
  el.className = `status ${cls}`.trim();
}

// ---- WebGPU availability, checked before anything is downloaded -------------------------------

function webgpuProblem() {
  if (!window.isSecureContext) {
    return [
      "WebGPU needs a secure page",
      `This page was opened from ${location.origin}, which the browser does not treat as secure, ` +
        "so WebGPU and the microphone are switched off. Open it over https:// or from localhost.",
    ];
  }
  if (!("gpu" in navigator)) {
    return [
      "This browser has no WebGPU",
      "navigator.gpu is undefined. parle needs WebGPU: use a recent Chrome or Edge (113 or later), " +
        "Safari 26 or later, or Firefox 141 or later on Windows. On Linux, Chrome still needs " +
        "chrome://flags/#enable-unsafe-webgpu (and #enable-vulkan) switched on.",
    ];
  }
  return null;
}

// ---- The model worker -------------------------------------------------------------------------

let worker = null;

function startWorker() {
  worker = new Worker(new URL("./worker.js", import.meta.url), { type: "module" });
  worker.onmessage = (e) => onWorkerMessage(e.data);
  worker.onerror = (e) => {
    e.preventDefault();
    showError(
      "gpu",
      "The model worker failed to start",
      `${e.message || "unknown error"}. This browser may not support module workers ` +
        "(Chrome 80+, Safari 15+, Firefox 114+).",
    );
    setStatus("gpu-status", "No GPU check was possible.", "bad");
  };
}

function checkGpu() {
  clearError("gpu");
  setStatus("gpu-status", "Opening the GPU…");
  setStatus("self-test", "");
  $("gpu-report").textContent = "";
  worker.postMessage({
    type: "gpu",
    forceF32: $("opt-f32").checked,
    noSubgroups: $("opt-nosg").checked,
  });
}

function onWorkerMessage(m) {
  switch (m.type) {
    case "version":
      $("version").textContent = m.version;
      break;
    case "gpu":
      setStatus("gpu-status", "WebGPU is available. Adapter report:", "ok");
      $("gpu-report").textContent = m.report;
      setStatus("self-test", "Running a kernel on the GPU…");
      break;
    case "self-test":
      setStatus("self-test", m.text, m.ok ? "ok" : "bad");
      break;
    case "error":
      showError("gpu", m.title, m.detail);
      if (m.kind === "gpu") setStatus("gpu-status", "No usable GPU.", "bad");
      if (m.kind === "self-test") setStatus("self-test", "The GPU self-test failed.", "bad");
      break;
    case "stats":
      $("st-in").textContent = m.framesIn;
      $("st-out").textContent = m.framesOut;
      $("level").value = Math.max(-60, m.levelDb);
      break;
  }
}

// ---- Audio: microphone -> capture worklet -> worker -> playback worklet -> speaker --------------

let audio = null; // { ctx, stream }

const MIC_ERRORS = {
  NotAllowedError: [
    "Microphone access was denied",
    "parle needs the microphone to hear you. Allow it for this site (the microphone or lock icon " +
      "in the address bar, or the browser's site settings), then press “Start microphone” again.",
  ],
  SecurityError: [
    "Microphone access is blocked",
    "The browser or a policy blocks the microphone for this page (it must be served over https:// " +
      "or from localhost, and not inside a frame without microphone permission).",
  ],
  NotFoundError: [
    "No microphone found",
    "The browser sees no audio input device. Plug in or enable a microphone, then try again.",
  ],
  NotReadableError: [
    "The microphone could not be opened",
    "Another application may be using it, or the operating system denied access to the browser.",
  ],
};

async function startAudio() {
  clearError("audio");
  if (!navigator.mediaDevices?.getUserMedia) {
    showError(
      "audio",
      "No microphone API",
      "navigator.mediaDevices is missing: the page must be served over https:// or from localhost.",
    );
    return;
  }
  $("audio-start").disabled = true;
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true, autoGainControl: true },
    });
  } catch (e) {
    const [title, detail] = MIC_ERRORS[e.name] ?? ["The microphone could not be started", ""];
    showError("audio", title, `${detail}${detail ? "\n" : ""}(${e.name}: ${e.message})`);
    $("audio-start").disabled = false;
    return;
  }
  try {
    const ctx = new AudioContext({ latencyHint: "interactive" });
    await Promise.all([
      ctx.audioWorklet.addModule(new URL("./capture-worklet.js", import.meta.url)),
      ctx.audioWorklet.addModule(new URL("./playback-worklet.js", import.meta.url)),
    ]);
    const capture = new AudioWorkletNode(ctx, "parle-capture", { numberOfInputs: 1, numberOfOutputs: 0 });
    const playback = new AudioWorkletNode(ctx, "parle-playback", {
      numberOfInputs: 0,
      numberOfOutputs: 1,
      outputChannelCount: [1],
    });
    playback.port.onmessage = (e) => showPlaybackStats(e.data);
    // Frames go worklet -> worker -> worklet on their own channels, never through this thread.
    const toWorker = new MessageChannel();
    const fromWorker = new MessageChannel();
    capture.port.postMessage({ type: "connect", port: toWorker.port1 }, [toWorker.port1]);
    playback.port.postMessage({ type: "connect", port: fromWorker.port1 }, [fromWorker.port1]);
    worker.postMessage({ type: "audio", capture: toWorker.port2, playback: fromWorker.port2 }, [
      toWorker.port2,
      fromWorker.port2,
    ]);
    ctx.createMediaStreamSource(stream).connect(capture);
    playback.connect(ctx.destination);
    await ctx.resume();
    audio = { ctx, stream };
    $("audio-stop").disabled = false;
  } catch (e) {
    stream.getTracks().forEach((t) => t.stop());
    showError("audio", "The audio pipeline could not be started", String(e?.message ?? e));
    $("audio-start").disabled = false;
  }
}

async function stopAudio() {
  if (!audio) return;
  worker.postMessage({ type: "audio-stop" });
  audio.stream.getTracks().forEach((t) => t.stop());
  await audio.ctx.close();
  audio = null;
  $("audio-stop").disabled = true;
  $("audio-start").disabled = false;
}

function showPlaybackStats(s) {
  $("st-played").textContent = `${s.played.toFixed(1)} s`;
  $("st-missed").textContent = `${s.missed.toFixed(1)} s`;
  $("st-buffer").textContent = `${Math.round(s.bufferedMs)} ms`;
  $("st-glitches").textContent = `${s.underruns} / ${s.drops}`;
}

// ---- Offline: the service worker caches the app shell -------------------------------------------

async function registerServiceWorker() {
  if (!("serviceWorker" in navigator)) {
    $("offline-status").textContent = "offline use not supported by this browser";
    return;
  }
  try {
    await navigator.serviceWorker.register("sw.js");
    await navigator.serviceWorker.ready;
    $("offline-status").textContent = "available offline";
  } catch (e) {
    $("offline-status").textContent = `offline cache unavailable (${e.message})`;
  }
}

// ---- Start-up ----------------------------------------------------------------------------------

function main() {
  const params = new URLSearchParams(location.search);
  $("opt-f32").checked = params.has("f32");
  $("opt-nosg").checked = params.has("nosubgroups");
  $("audio-start").onclick = startAudio;
  $("audio-stop").onclick = stopAudio;
  registerServiceWorker();
  // The worker also carries the audio path, so it starts even without WebGPU.
  startWorker();
  const problem = webgpuProblem();
  if (problem) {
    showError("gpu", ...problem);
    setStatus("gpu-status", "No WebGPU.", "bad");
    $("gpu-retry").disabled = true;
    return;
  }
  $("gpu-retry").onclick = checkGpu;
  checkGpu();
}

main();
