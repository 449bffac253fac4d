// The microphone controls shared by the views that listen without a conversation of their own
// (Captions, Translate): Start / Stop, "record" checkbox and WAV download, the status line, and
// the running state, for elements named `${prefix}-start`, `-stop`, `-record`, `-wav`, `-status`.

/**
 * `$`: the page's getElementById; `engine()`: the engine now; `echoPath()`: the playback path
 * setting; `onError(err, where)`; `onStats(stats)`; `onChange(running)` after a start or stop.
 * The view's part: `prefix`; `file`: the download name's stem; `onStep(m)`; `publish()` (after
 * every change of state); `clear()` (before a start); `prepare(engine)` (after the engine's
 * reset, before the microphone starts; optional); `listening`: the status while it runs;
 * `during`: what an error during the run happened in; `stopped()`: the status after a stop
 * (may be async).
 */
export function listeningControls(page, view) {
  const { $, engine, echoPath, onError, onStats, onChange } = page;
  const { prefix, file, onStep, publish, clear, prepare, listening, during, stopped } = view;
  const el = (name) => $(`${prefix}-${name}`);
  let running = false;
  let recorded = false;

  function setStatus(text) {
    el("status").textContent = text;
  }

  function update() {
    el("start").disabled = running;
    el("stop").disabled = !running;
    el("wav").disabled = running || !recorded;
    document.body.classList.toggle("talking", running);
    publish();
    onChange?.(running);
  }

  async function start() {
    if (running) return;
    const e = engine();
    el("start").disabled = true;
    clear();
    try {
      await e.reset();
      await prepare?.(e);
      const mic = await e.startConversation({
        record: el("record").checked,
        echoPath: echoPath(),
        onStep,
        onStats,
        onError: (err) => {
          running = false;
          update();
          onError(err, during);
        },
      });
      running = true;
      window.parleApp.mic = mic;
      setStatus(listening);
    } catch (err) {
      onError(err, "starting the microphone");
    }
    update();
  }

  async function stop() {
    if (!running) return;
    running = false;
    await engine().stop();
    recorded = el("record").checked;
    setStatus(await stopped());
    update();
  }

  /** Offer `blob` as the download `${file}-<time>.${ext}`. */
  function save(blob, ext) {
    const a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    a.download = `${file}-${new Date().toISOString().replace(/[:.]/g, "-")}.${ext}`;
    a.click();
    setTimeout(() => URL.revokeObjectURL(a.href), 10000);
  }

  el("start").onclick = start;
  el("stop").onclick = stop;
  el("wav").onclick = async () => {
    const blob = await engine().recording();
    if (blob) save(blob, "wav");
  };

  return {
    start,
    stop,
    update,
    setStatus,
    save,
    get running() {
      return running;
    },
  };
}
