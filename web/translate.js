// The translation's text as the Translate view copies and saves it. Pure: the page and its test
// use it.

/** The streamed text (pieces joined as the engine decoded them) as plain text: white space runs
 * made one space, no leading or trailing space, one final newline (empty: no text). */
export function translationText(streamed) {
  const t = streamed.replace(/\s+/g, " ").trim();
  return t ? `${t}\n` : "";
}
