// Byte counts for people (decimal units: what download sizes and disks use). Shared by the page
// (main.js) and the engine worker's storage (store.js).

export function formatBytes(n) {
  if (n == null || !Number.isFinite(n)) return "?";
  const u = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1000 && i < u.length - 1) {
    n /= 1000;
    i++;
  }
  return `${n.toFixed(i === 0 ? 0 : n < 10 ? 2 : 1)} ${u[i]}`;
}
