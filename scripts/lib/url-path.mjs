// A request target's path, decoded safely, and the file it names inside a served folder.
//
// requestPath() turns "/models/m/config.json?x" into its decoded segments, refusing what could
// name something else than a plain file below the folder: bad percent-encoding, encoded or raw
// "." / ".." segments, encoded "/" (%2f), backslashes, NUL (400), and any segment that starts with
// "." (404: .git/, .cache/ and other hidden files are never served). fileInside() then follows
// symbolic links and serves the target only when its real path is still inside the folder's real
// path (a Hugging Face cache's snapshots/REV/FILE -> ../../blobs/HASH stays inside and works; a
// link to /etc/passwd does not) and it is a regular file (no directories, sockets or FIFOs).

import { realpathSync } from "node:fs";
import { realpath, stat } from "node:fs/promises";
import { join, sep } from "node:path";

/**
 * `url` (a request target such as req.url) → { segments, dir } where `dir` says the path ended
 * with "/", or { status, message } for a target that must be refused.
 */
export function requestPath(url) {
  if (typeof url !== "string" || !url.startsWith("/")) return { status: 400, message: "the request target must be a path starting with /" };
  const path = url.split(/[?#]/, 1)[0];
  if (path.includes("\\")) return { status: 400, message: "backslashes are not allowed in paths" };
  const raw = path.slice(1).split("/");
  const dir = raw[raw.length - 1] === "";
  if (dir) raw.pop();
  const segments = [];
  for (const r of raw) {
    if (r === "") return { status: 400, message: "empty path segment (//)" };
    let s;
    try {
      s = decodeURIComponent(r);
    } catch {
      return { status: 400, message: `bad percent-encoding in "${r}"` };
    }
    if (s.includes("/") || s.includes("\\") || s.includes("\0")) return { status: 400, message: "encoded /, backslash or NUL in a path segment" };
    if (s === "." || s === "..") return { status: 400, message: "'.' and '..' path segments are not allowed" };
    if (s.startsWith(".")) return { status: 404, message: "not found (hidden files are not served)" };
    segments.push(s);
  }
  return { segments, dir };
}

/** The real path of a folder to serve from (throws a clear error when it does not exist). */
export function realFolder(dir) {
  try {
    return realpathSync(dir);
  } catch (e) {
    throw new Error(`cannot serve ${dir}: ${e.code === "ENOENT" ? "no such directory" : e.message}`);
  }
}

/**
 * The regular file that `segments` name below `root` (a real path from realFolder()):
 * { path, stat } with `path` the file's real path, or { status, message }.
 */
export async function fileInside(root, segments) {
  let real;
  try {
    real = await realpath(join(root, ...segments));
  } catch (e) {
    if (["ENOENT", "ENOTDIR", "ELOOP", "ENAMETOOLONG"].includes(e.code)) return { status: 404, message: "not found" };
    if (e.code === "EACCES") return { status: 403, message: "permission denied" };
    return { status: 500, message: `cannot resolve the path (${e.code ?? e.message})` };
  }
  if (real !== root && !real.startsWith(root.endsWith(sep) ? root : root + sep)) return { status: 404, message: "not found (the link leads outside the served folder)" };
  let st;
  try {
    st = await stat(real);
  } catch (e) {
    return e.code === "ENOENT" ? { status: 404, message: "not found" } : { status: 500, message: `cannot read the file (${e.code ?? e.message})` };
  }
  if (!st.isFile()) return { status: 404, message: st.isDirectory() ? "not found (directories are not listed)" : "not found (not a regular file)" };
  return { path: real, stat: st };
}
