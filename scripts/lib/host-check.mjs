// Which Host headers the local server answers, and the URLs it is reachable at.
//
// A page on any web site can make the browser send requests to 127.0.0.1 under a name of its own
// that resolves there (DNS rebinding); the Host header still carries that name. So only loopback
// names (127.0.0.0/8, localhost, [::1], any port) are answered, plus the name the server was told
// to listen on (--host) and, when that is a wildcard (0.0.0.0, ::), this machine's own addresses.

import { isIP } from "node:net";
import { networkInterfaces } from "node:os";

const WILDCARDS = new Set(["0.0.0.0", "::", "0:0:0:0:0:0:0:0"]);

/** The host name of a Host header value, lower case, IPv6 without brackets; null if malformed. */
export function hostName(header) {
  if (typeof header !== "string" || header === "") return null;
  const h = header.trim().toLowerCase();
  let m = /^\[([0-9a-f:.]+)\](?::(\d{1,5}))?$/.exec(h);
  if (m) return isIP(m[1]) === 6 ? m[1] : null;
  m = /^([a-z0-9.-]+)(?::(\d{1,5}))?$/.exec(h);
  return m ? m[1] : null;
}

/** Whether `name` (as hostName() returns it, or a --host value) is a loopback name. */
export function isLoopbackName(name) {
  if (name === "localhost") return true;
  if (isIP(name) === 4) return name.startsWith("127.");
  return name === "::1" || name === "0:0:0:0:0:0:0:1";
}

export const isWildcard = (host) => WILDCARDS.has(host);

/** This machine's interface addresses: IPv4 only for 0.0.0.0, both families for "::". */
function interfaceAddresses(host) {
  const out = [];
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) {
      if (a.family === "IPv6" && (host === "0.0.0.0" || a.scopeid)) continue; // link-local needs a zone id: no URL for it
      out.push(a.address);
    }
  }
  return out.sort((a, b) => Number(isLoopbackName(b)) - Number(isLoopbackName(a)));
}

/** The non-loopback names that a server listening on `host` also answers. */
export function extraHostNames(host) {
  const h = host.toLowerCase().replace(/^\[(.*)\]$/, "$1");
  if (isWildcard(h)) return new Set(interfaceAddresses(h).filter((a) => !isLoopbackName(a)));
  return isLoopbackName(h) ? new Set() : new Set([h]);
}

/** Whether a request's Host header may be answered (`extra` from extraHostNames()). */
export function hostAllowed(header, extra) {
  const name = hostName(header);
  return name !== null && (isLoopbackName(name) || extra.has(name));
}

/** The URLs a server listening on `host`:`port` can be opened at (one per interface address for a wildcard). */
export function listenUrls(host, port) {
  const h = host.replace(/^\[(.*)\]$/, "$1");
  const names = isWildcard(h) ? interfaceAddresses(h) : [h];
  return names.map((n) => `http://${isIP(n) === 6 ? `[${n}]` : n}:${port}/`);
}
