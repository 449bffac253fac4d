// The page's Translate view, for Kyutai Hibiki models (kind "hibiki"): the microphone (French)
// through the model, its English speech played back as a conversation's is, and its English text
// as it streams; Copy / Download .txt of the translation, and with "Record both sides" the stereo
// WAV of the microphone and the translation.

import { translationText } from "./translate.js";

/**
 * `$`: the page's getElementById; `engine()`: the engine now; `echoPath()`: the playback path
 * setting; `onError(err, where)`; `onStats(stats)`; `onChange(running)` after a start or stop.
 */
export function translateView({ $, engine, echoPath, onError, onStats, onChange }) {
  let running = false;
  let s = fresh();
  let recorded = false;
  let modelCfg = null; // the guidance coefficient in effect (load()'s info.cfg, then the user's)

  function fresh() {
    // Per step the model ran: its text token and its audio tokens (null before its first
    // complete frame); `text`: the decoded translation so far.
    return { tokens: [], audio: [], text: "", frames: [] };
  }

  function publish() {
    window.parleApp.translate = { text: s.text, tokens: [...s.tokens], audio: s.audio.map((a) => (a ? [...a] : null)), frames: [...s.frames], running };
  }

  function onStep(m) {
    s.tokens.push(m.textToken ?? null);
    s.audio.push(m.audioTokens ?? null);
    s.frames.push(m.frame ?? null);
    if (m.text) {
      s.text += m.text;
      $("translate-live").append(m.text);
      $("translate-live").scrollTop = $("translate-live").scrollHeight;
    }
    const any = s.text.trim().length > 0;
    $("translate-copy").disabled = $("translate-txt").disabled = !any;
    publish();
  }

  async function start() {
    if (running) return;
    const e = engine();
    $("translate-start").disabled = true;
    s = fresh();
    publish();
    $("translate-live").textContent = "";
    $("translate-copy").disabled = $("translate-txt").disabled = true;
    try {
      await e.reset();
      // The guidance coefficient applies from a reset (switching guidance on or off needs one).
      const cfg = $("translate-cfg").value === "" ? null : Number($("translate-cfg").value);
      if (cfg != null && cfg !== modelCfg) {
        await e.configure({ cfg });
        modelCfg = cfg;
      }
      const mic = await e.startConversation({
        record: $("translate-record").checked,
        echoPath: echoPath(),
        onStep,
        onStats,
        onError: (err) => {
          running = false;
          update();
          onError(err, "during the translation");
        },
      });
      running = true;
      window.parleApp.mic = mic;
      setStatus("Listening: speak French, and the English translation plays and appears below.");
    } catch (err) {
      onError(err, "starting the microphone");
    }
    update();
  }

  async function stop() {
    if (!running) return;
    running = false;
    await engine().stop();
    recorded = $("translate-record").checked;
    const words = translationText(s.text).split(/\s+/).filter(Boolean).length;
    setStatus(`${s.tokens.length} frames translated, ${words} word${words === 1 ? "" : "s"} of translation.`);
    update();
  }

  function update() {
    $("translate-start").disabled = running;
    $("translate-stop").disabled = !running;
    $("translate-wav").disabled = running || !recorded;
    document.body.classList.toggle("talking", running);
    publish();
    onChange?.(running);
  }

  function setStatus(text) {
    $("translate-status").textContent = text;
  }

  async function copy() {
    try {
      await navigator.clipboard.writeText(translationText(s.text));
      setStatus("Copied the translation to the clipboard.");
    } catch (e) {
      setStatus(`The clipboard refused the text (${e.message}): use Download .txt instead.`);
    }
  }

  function save(blob, ext) {
    const a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    a.download = `parle-translation-${new Date().toISOString().replace(/[:.]/g, "-")}.${ext}`;
    a.click();
    setTimeout(() => URL.revokeObjectURL(a.href), 10000);
  }

  $("translate-start").onclick = start;
  $("translate-stop").onclick = stop;
  $("translate-copy").onclick = copy;
  $("translate-txt").onclick = () => save(new Blob([translationText(s.text)], { type: "text/plain" }), "txt");
  $("translate-wav").onclick = async () => {
    const blob = await engine().recording();
    if (blob) save(blob, "wav");
  };

  return {
    /** Show the view (a Hibiki model is loaded: `info` is load()'s result) or hide it; shown, it
     * replaces the conversation. */
    show(on, info) {
      $("translate-section").hidden = !on;
      if (on) {
        modelCfg = info?.cfg ?? null;
        $("translate-cfg-row").hidden = modelCfg == null;
        $("translate-cfg").value = modelCfg == null ? "" : String(modelCfg);
        $("talk-section").hidden = true;
        update();
      }
    },
    start,
    stop,
    get running() {
      return running;
    },
  };
}
