// A moderately sized MLX q4 LM for the wasm-heap test (page-test group `heap`): the tiny LM of
// tests/fixtures/lm/formats/mlx_q4 with its text vocabulary widened to `textCard` entries, so that
// three of its tensors (the text embedding, the text head and the depformer's text embedding,
// all [textCard(+1), 64] as 4-bit codes) take tens of MB while every other tensor stays as
// published in the fixture. Values are not meaningful (codes from a counter, scales 2⁻⁷, biases
// 0): the test loads the model and measures wasm memory, it runs no frame.

import { closeSync, copyFileSync, mkdirSync, openSync, readFileSync, writeFileSync, writeSync } from "node:fs";
import { join } from "node:path";

/**
 * Write the model directory `dir` (config.json, model.q4.safetensors, mimi.safetensors) from the fixtures in `fixtures` (tests/fixtures); returns
 * `{ dir, largest, bytes }`: the largest tensor's and the checkpoint's size in bytes.
 */
export function writeHeapModel(dir, fixtures, textCard) {
  const src = join(fixtures, "lm", "formats", "mlx_q4");
  const lm1 = join(fixtures, "lm", "delay1");
  const cfg = JSON.parse(readFileSync(join(src, "config.json"), "utf8"));
  const oldCard = cfg.text_card;
  const mimi = JSON.parse(readFileSync(join(lm1, "config.json"), "utf8")).mimi;
  // No text tokenizer: the fixture's has the tiny vocabulary (a model without one shows no text).
  Object.assign(cfg, { text_card: textCard, mimi, mimi_name: "mimi.safetensors" });
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "config.json"), JSON.stringify(cfg, null, 1));
  copyFileSync(join(lm1, "mimi.safetensors"), join(dir, "mimi.safetensors"));

  const file = readFileSync(join(src, "model.q4.safetensors"));
  const n = Number(file.readBigUInt64LE(0));
  const header = JSON.parse(file.toString("utf8", 8, 8 + n));
  const data = file.subarray(8 + n);
  // Rows of the text vocabulary (text_card entries, +1 for the embeddings' initial token).
  const widen = (rows) => (rows === oldCard ? textCard : rows === oldCard + 1 ? textCard + 1 : rows);
  const out = header.__metadata__ ? { __metadata__: header.__metadata__ } : {};
  const parts = [];
  let offset = 0;
  let largest = 0;
  for (const name of Object.keys(header).sort()) {
    if (name === "__metadata__") continue;
    const t = header[name];
    const shape = [widen(t.shape[0]), ...t.shape.slice(1)];
    let bytes;
    if (shape[0] === t.shape[0]) {
      bytes = data.subarray(t.data_offsets[0], t.data_offsets[1]);
    } else {
      const size = (t.data_offsets[1] - t.data_offsets[0]) / t.shape[0] * shape[0];
      bytes = Buffer.alloc(size);
      if (t.dtype === "U32") for (let i = 0; i < size; i += 4) bytes.writeUInt32LE((i * 2654435761) >>> 0, i);
      else if (name.endsWith(".scales")) for (let i = 0; i < size; i += 2) bytes.writeUInt16LE(0x3c00, i);
    }
    out[name] = { dtype: t.dtype, shape, data_offsets: [offset, offset + bytes.length] };
    parts.push(bytes);
    offset += bytes.length;
    largest = Math.max(largest, bytes.length);
  }
  const json = Buffer.from(JSON.stringify(out));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  const fd = openSync(join(dir, "model.q4.safetensors"), "w");
  writeSync(fd, len);
  writeSync(fd, json);
  for (const p of parts) writeSync(fd, p);
  closeSync(fd);
  return { dir, largest, bytes: 8 + json.length + offset };
}
