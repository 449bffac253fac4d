// Range requests and their validators, as RFC 9110 says (§8.8 validators, §13.1.5 If-Range,
// §14 Range): which bytes of a file of `size` bytes to send, and whether an If-Range allows a
// partial answer. The file server (scripts/serve.mjs) decides with these before handing the file
// to `send`, whose own parser answers 416 to malformed or reversed ranges and matches If-Range
// loosely.

/**
 * The part of a `size`-byte file that a Range header asks for:
 *   { kind: "whole" }               no Range, another unit, a malformed or reversed range, or
 *                                   several ranges (we send no multipart answers): 200, whole file
 *   { kind: "unsatisfiable" }       one range that starts at or past the end, or `bytes=-0`: 416
 *   { kind: "part", start, end }    one range, `end` inclusive and clamped to the file: 206
 */
export function parseRange(header, size) {
  if (typeof header !== "string") return { kind: "whole" };
  const m = /^\s*bytes\s*=(.*)$/i.exec(header);
  if (!m) return { kind: "whole" };
  // A list may hold empty elements (RFC 9110 §5.6.1); OWS around each one.
  const specs = m[1]
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
  if (specs.length !== 1) return { kind: "whole" };
  const spec = specs[0];
  const total = BigInt(size);
  let r;
  if ((r = /^(\d+)-(\d*)$/.exec(spec))) {
    // Digits can be longer than a double is exact: compare as BigInt.
    const first = BigInt(r[1]);
    const last = r[2] === "" ? null : BigInt(r[2]);
    if (last !== null && last < first) return { kind: "whole" };
    if (first >= total) return { kind: "unsatisfiable" };
    const end = last === null || last >= total ? total - 1n : last;
    return { kind: "part", start: Number(first), end: Number(end) };
  }
  if ((r = /^-(\d+)$/.exec(spec))) {
    const suffix = BigInt(r[1]);
    if (suffix === 0n || total === 0n) return { kind: "unsatisfiable" };
    const start = suffix >= total ? 0n : total - suffix;
    return { kind: "part", start: Number(start), end: Number(total - 1n) };
  }
  return { kind: "whole" };
}

/**
 * A strong entity tag for a file (§8.8.3): size, modification time (µs) and inode, so that a
 * file replaced or rewritten in place gets a new tag.
 */
export function strongEtag(stat) {
  return `"${stat.size.toString(36)}-${Math.round(stat.mtimeMs * 1000).toString(36)}-${stat.ino.toString(36)}"`;
}

/**
 * Whether an If-Range header lets a Range be honoured (§13.1.5): absent, or an entity tag that is
 * strongly equal to `etag`, or an HTTP date equal to the file's Last-Modified (whole seconds).
 * A weak tag, a list, an unparsable date or any mismatch: false (send the whole file).
 */
export function ifRangeAllows(header, etag, mtimeMs) {
  if (header === undefined) return true;
  const v = String(header).trim();
  if (v.startsWith('"')) return v === etag;
  if (/^W\//.test(v) || !/^[A-Za-z]{3}, \d\d [A-Za-z]{3} \d{4} \d\d:\d\d:\d\d GMT$/.test(v)) return false;
  const date = Date.parse(v);
  return Number.isFinite(date) && date === Math.floor(mtimeMs / 1000) * 1000;
}
