// The model worker: loads the wasm package (web/pkg, built by `npm run build:wasm`) and owns the
// GPU. Audio frames arrive from the capture worklet on a MessagePort and leave for the playback
// worklet on another; until the models are wired in, each frame is passed straight through.
// Message formats: see main.js.

let pkg = null; // the wasm package's exports once loaded
let loading = null; // the load promise, shared by every message

// Imported dynamically so that the audio path keeps working (and the page can say why) when the
// package is missing or fails to compile.
function loadWasm() {
  loading ??= import("./pkg/parle.js")
    .then(async (m) => {
      await m.default();
      pkg = m;
      postMessage({ type: "version", version: m.version() });
    })
    .catch((e) => {
      loading = null; // let a later message retry
      throw new Error(
        `${e?.message ?? e}. If you built parle yourself, build the package with ` +
          "`npm run build:wasm` (it goes to web/pkg/).",
      );
    });
  return loading;
}

function fail(kind, title, detail) {
  postMessage({ type: "error", kind, title, detail });
}

async function checkGpu({ forceF32, noSubgroups }) {
  // Specific messages for the two common failures, before the Rust side reports its own.
  if (!navigator.gpu) {
    fail(
      "gpu",
      "WebGPU is not available to workers in this browser",
      "navigator.gpu is undefined inside a Web Worker. Update the browser (Chrome/Edge 113+, Safari 26+, Firefox 141+).",
    );
    return;
  }
  let adapter = null;
  try {
    adapter = await navigator.gpu.requestAdapter({ powerPreference: "high-performance" });
  } catch (e) {
    adapter = null;
  }
  if (!adapter) {
    fail(
      "gpu",
      "WebGPU found no GPU adapter",
      "The browser supports WebGPU but offered no adapter: the GPU may be blocklisted, " +
        "hardware acceleration may be off, or the GPU driver too old. chrome://gpu (or " +
        "about:support in Firefox) says why.",
    );
    return;
  }
  try {
    await loadWasm();
  } catch (e) {
    fail("gpu", "The parle WebAssembly module could not be loaded", String(e?.message ?? e));
    return;
  }
  let report;
  try {
    report = await pkg.gpuInfo(!!forceF32, !!noSubgroups);
  } catch (e) {
    fail("gpu", "The GPU could not be opened", String(e?.message ?? e));
    return;
  }
  postMessage({ type: "gpu", report });
  try {
    postMessage({ type: "self-test", ok: true, text: await pkg.gpuSelfTest(!!forceF32, !!noSubgroups) });
  } catch (e) {
    fail("self-test", "The GPU self-test failed", String(e?.message ?? e));
  }
}

// ---- Audio frames ------------------------------------------------------------------------------

let audio = null; // { capture, playback, framesIn, framesOut, levelDb, timer }

function startAudio({ capture, playback }) {
  stopAudio();
  audio = { capture, playback, framesIn: 0, framesOut: 0, levelDb: -100, timer: 0 };
  capture.onmessage = (e) => onFrame(e.data);
  audio.timer = setInterval(postStats, 250);
}

function onFrame(m) {
  if (!audio || m.type !== "frame") return;
  const pcm = m.samples; // Float32Array(1920), 24 kHz mono
  audio.framesIn++;
  let sum = 0;
  for (let i = 0; i < pcm.length; i++) sum += pcm[i] * pcm[i];
  audio.levelDb = 10 * Math.log10(sum / pcm.length + 1e-12);
  // The model step goes here: Mimi encode -> Moshi -> Mimi decode. For now: loopback.
  audio.playback.postMessage({ type: "frame", samples: pcm }, [pcm.buffer]);
  audio.framesOut++;
}

function postStats() {
  if (!audio) return;
  const { framesIn, framesOut, levelDb } = audio;
  postMessage({ type: "stats", framesIn, framesOut, levelDb });
}

function stopAudio() {
  if (!audio) return;
  clearInterval(audio.timer);
  audio.capture.close();
  audio.playback.close();
  postStats();
  audio = null;
}

onmessage = (e) => {
  const m = e.data;
  switch (m.type) {
    case "gpu":
      checkGpu(m);
      break;
    case "audio":
      startAudio(m);
      break;
    case "audio-stop":
      stopAudio();
      break;
  }
};

// Show the version early, and say at once when the package is missing.
loadWasm().catch((e) =>
  fail("wasm", "The parle WebAssembly module could not be loaded", String(e?.message ?? e)),
);
