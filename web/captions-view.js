// The page's Captions view, for Kyutai STT models (kind "stt"): the microphone through the model,
// the text as it streams with an end-of-turn mark, the words with their start times (the
// engine's words(): Kyutai's procedure, in Rust), and Copy / Download .txt / .vtt (and the
// microphone's audio as a WAV when "Keep the audio" is checked, to go with the .vtt).

import { captionLines, joinWords, toText, toVtt } from "./captions.js";
import { listeningControls } from "./listening.js";

const PADDING = 3; // Kyutai's text padding id: a step without a text token counts as padding
const EOT = 0.5; // Kyutai's scripts compare the end-of-turn probability with 0.5

/**
 * `page`: `$`: the page's getElementById; `engine()`: the engine now; `echoPath()`: the playback path
 * setting; `onError(err, where)`; `onStats(stats)`; `onChange(running)` after a start or stop.
 */
export function captionsView(page) {
  const { $, engine, onError } = page;
  let s = fresh();
  let refreshing = null;
  let dirty = false;

  function fresh() {
    // tokens: one per step; turns: steps where endOfTurn crossed 0.5 upwards.
    return { tokens: [], text: "", turns: [], lastEot: 0, words: [], offsetSeconds: 0, frameRate: 12.5 };
  }

  const turnTimes = () => s.turns.map((step) => Math.max(0, step / s.frameRate - s.offsetSeconds));

  function publish() {
    window.parleApp.captions = { text: s.text, tokens: [...s.tokens], turns: [...s.turns], turnTimes: turnTimes(), words: s.words, running: mic?.running ?? false };
  }

  function onStep(m) {
    s.tokens.push(m.textToken ?? PADDING);
    if (m.text) {
      s.text += m.text;
      $("captions-live").append(m.text);
    }
    const eot = m.endOfTurn ?? 0;
    if (eot >= EOT && s.lastEot < EOT) {
      s.turns.push(s.tokens.length - 1);
      const mark = document.createElement("mark");
      mark.className = "eot";
      mark.title = "end of turn";
      mark.textContent = " ⏎ ";
      $("captions-live").append(mark);
    }
    s.lastEot = eot;
    $("captions-live").scrollTop = $("captions-live").scrollHeight;
    if (m.textToken != null && m.textToken !== PADDING) refresh();
    else publish();
  }

  // The words of all steps so far, one request at a time (steps arriving meanwhile ask again).
  function refresh() {
    if (refreshing) {
      dirty = true;
      return refreshing;
    }
    const mine = s;
    refreshing = (async () => {
      do {
        dirty = false;
        const r = await engine().words(mine.tokens);
        if (mine !== s) return;
        Object.assign(s, { words: r.words, offsetSeconds: r.offsetSeconds, frameRate: r.frameRate });
        render();
      } while (dirty);
    })()
      .catch((e) => onError(e, "word timing"))
      .finally(() => (refreshing = null));
    return refreshing;
  }

  function render() {
    const list = $("captions-words");
    list.textContent = "";
    for (const line of captionLines(s.words, turnTimes(), Infinity)) {
      const p = document.createElement("p");
      for (const w of line.words) {
        const text = joinWords([w]);
        if (!text) continue;
        const span = document.createElement("span");
        span.className = "word";
        span.dataset.start = String(w.start);
        span.title = `${w.start.toFixed(2)}–${Math.max(w.start, w.end).toFixed(2)} s`;
        const t = document.createElement("small");
        t.textContent = fmtClock(w.start);
        span.append(t, ` ${text} `);
        p.append(span);
      }
      if (line.turn) {
        const mark = document.createElement("mark");
        mark.className = "eot";
        mark.textContent = "⏎ end of turn";
        p.append(mark);
      }
      list.append(p);
    }
    const any = s.words.length > 0;
    for (const id of ["captions-copy", "captions-txt", "captions-vtt"]) $(id).disabled = !any;
    publish();
  }

  const mic = listeningControls(page, {
    prefix: "captions",
    file: "parle-captions",
    onStep,
    publish,
    clear() {
      s = fresh();
      $("captions-live").textContent = "";
      render();
    },
    listening: "Listening: speak, and the words appear below.",
    during: "during captions",
    // The last word ends with the stream: ask once more.
    async stopped() {
      await refresh();
      return `${s.words.length} word${s.words.length === 1 ? "" : "s"}, ${s.turns.length} end${s.turns.length === 1 ? "" : "s"} of turn.`;
    },
  });
  const setStatus = mic.setStatus;

  async function copy() {
    try {
      await navigator.clipboard.writeText(toText(s.words, turnTimes()));
      setStatus(`Copied ${s.words.length} words to the clipboard.`);
    } catch (e) {
      setStatus(`The clipboard refused the text (${e.message}): use Download .txt instead.`);
    }
  }

  function download(ext) {
    const body = ext === "vtt" ? toVtt(s.words, turnTimes()) : toText(s.words, turnTimes());
    mic.save(new Blob([body], { type: ext === "vtt" ? "text/vtt" : "text/plain" }), ext);
  }

  $("captions-copy").onclick = copy;
  $("captions-txt").onclick = () => download("txt");
  $("captions-vtt").onclick = () => download("vtt");

  return {
    /** Show the view (an STT model is loaded) or hide it. */
    show(on) {
      $("captions-section").hidden = !on;
      $("talk-section").hidden = on;
      if (on) mic.update();
    },
    start: mic.start,
    stop: mic.stop,
    get running() {
      return mic.running;
    },
  };
}

// 75.3 -> "1:15.3"
function fmtClock(s) {
  const t = Math.max(0, s);
  return `${Math.floor(t / 60)}:${(t % 60).toFixed(1).padStart(4, "0")}`;
}
