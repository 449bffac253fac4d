// Captions as text and WebVTT, from timed words (the engine's words(): { text, start, end } in
// seconds) and end-of-turn times. Pure functions: the page's Captions view and the tests use them.

/** Words per cue at most: a cue is one line of a caption. */
export const CUE_WORDS = 8;

/** The shortest cue, in seconds (WebVTT needs an end after the start; a word's end can be at or
 * before its start in Kyutai's procedure). */
const MIN_CUE = 0.08;

/**
 * Lines of words: a new line after each end of turn (before the first word starting at or after
 * the turn's time) and after `maxWords` words. Returns [{ words, turn }] (`turn`: the line ends a
 * turn).
 */
export function captionLines(words, turns = [], maxWords = CUE_WORDS) {
  const marks = [...turns].sort((a, b) => a - b);
  const lines = [];
  let line = [];
  let m = 0;
  const flush = (turn) => {
    if (line.length) lines.push({ words: line, turn });
    line = [];
  };
  for (const w of words) {
    let turn = false;
    while (m < marks.length && marks[m] <= w.start) {
      turn = true;
      m++;
    }
    if (turn) flush(true);
    if (line.length >= maxWords) flush(false);
    line.push(w);
  }
  flush(m < marks.length);
  return lines;
}

/** WebVTT cues: one per line, start = its first word's start, end = its last word's end (at
 * least MIN_CUE after the start), in increasing start order. */
export function captionCues(words, turns = []) {
  return captionLines(words, turns).map(({ words: ws }) => {
    const start = ws[0].start;
    const end = Math.max(...ws.map((w) => w.end), start + MIN_CUE);
    return { start, end, text: joinWords(ws) };
  });
}

/** "HH:MM:SS.mmm". */
export function vttTime(seconds) {
  const ms = Math.max(0, Math.round(seconds * 1000));
  const pad = (n, k = 2) => String(n).padStart(k, "0");
  return `${pad(Math.floor(ms / 3600000))}:${pad(Math.floor(ms / 60000) % 60)}:${pad(Math.floor(ms / 1000) % 60)}.${pad(ms % 1000, 3)}`;
}

/** A WebVTT file of the captions. */
export function toVtt(words, turns = []) {
  const cues = captionCues(words, turns).map((c, i) => `${i + 1}\n${vttTime(c.start)} --> ${vttTime(c.end)}\n${c.text.replace(/-->/g, "->")}\n`);
  return `WEBVTT\n\n${cues.join("\n")}`;
}

/** Plain text: the words separated by spaces, one line per turn. */
export function toText(words, turns = []) {
  const lines = captionLines(words, turns, Infinity).map((l) => joinWords(l.words));
  return lines.length ? `${lines.join("\n")}\n` : "";
}

/** A line's words, white space inside a word (a decoded segment can hold some) made one space. */
export function joinWords(words) {
  return words
    .map((w) => w.text.replace(/\s+/g, " ").trim())
    .filter(Boolean)
    .join(" ");
}
