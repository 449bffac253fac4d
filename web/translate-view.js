// The page's Translate view, for Kyutai Hibiki models (kind "hibiki"): the microphone (French)
// through the model, its English speech played back as a conversation's is, and its English text
// as it streams; Copy / Download .txt of the translation, and with "Record both sides" the stereo
// WAV of the microphone and the translation.

import { listeningControls } from "./listening.js";
import { translationText } from "./translate.js";

/**
 * `page`: `$`: the page's getElementById; `engine()`: the engine now; `echoPath()`: the playback path
 * setting; `onError(err, where)`; `onStats(stats)`; `onChange(running)` after a start or stop.
 */
export function translateView(page) {
  const { $ } = page;
  let s = fresh();
  let modelCfg = null; // the guidance coefficient in effect (load()'s info.cfg, then the user's)

  function fresh() {
    // Per step the model ran: its text token and its audio tokens (null before its first
    // complete frame); `text`: the decoded translation so far.
    return { tokens: [], audio: [], text: "", frames: [] };
  }

  function publish() {
    window.parleApp.translate = { text: s.text, tokens: [...s.tokens], audio: s.audio.map((a) => (a ? [...a] : null)), frames: [...s.frames], running: mic?.running ?? false };
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

  const mic = listeningControls(page, {
    prefix: "translate",
    file: "parle-translation",
    onStep,
    publish,
    clear() {
      s = fresh();
      publish();
      $("translate-live").textContent = "";
      $("translate-copy").disabled = $("translate-txt").disabled = true;
    },
    // The guidance coefficient applies from a reset (switching guidance on or off needs one).
    async prepare(e) {
      const cfg = $("translate-cfg").value === "" ? null : Number($("translate-cfg").value);
      if (cfg != null && cfg !== modelCfg) {
        await e.configure({ cfg });
        modelCfg = cfg;
      }
    },
    listening: "Listening: speak French, and the English translation plays and appears below.",
    during: "during the translation",
    stopped() {
      const words = translationText(s.text).split(/\s+/).filter(Boolean).length;
      return `${s.tokens.length} frames translated, ${words} word${words === 1 ? "" : "s"} of translation.`;
    },
  });
  const setStatus = mic.setStatus;

  async function copy() {
    try {
      await navigator.clipboard.writeText(translationText(s.text));
      setStatus("Copied the translation to the clipboard.");
    } catch (e) {
      setStatus(`The clipboard refused the text (${e.message}): use Download .txt instead.`);
    }
  }

  $("translate-copy").onclick = copy;
  $("translate-txt").onclick = () => mic.save(new Blob([translationText(s.text)], { type: "text/plain" }), "txt");

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
        mic.update();
      }
    },
    start: mic.start,
    stop: mic.stop,
    get running() {
      return mic.running;
    },
  };
}
