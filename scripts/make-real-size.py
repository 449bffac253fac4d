#!/usr/bin/env python3
"""Build Moshi 7B model directories at the published size and in the published layouts, with
random values, for the real-size benchmark (scripts/bench-real-size.mjs). Not used by CI.

    python3 scripts/make-real-size.py OUT_DIR [q4] [q8] [bf16]     (default: q4 q8)
    python3 scripts/make-real-size.py OUT_DIR bf16 --temporal-layers 2

--temporal-layers N keeps N of the 32 temporal layers (every other tensor at its published size,
the largest ones included) and writes OUT_DIR/moshiko-mlx-<format>-<N>-layers/ with a config.json
of one key, {"num_layers": N} (absent keys are the 7B's): the wasm heap's bound depends on the
largest tensor, not on the count, so this measures bf16's heap (a 15 GB file whose weights would
not fit a small machine's RAM in SwiftShader) at its real tensor sizes.

writes, per format, OUT_DIR/moshiko-mlx-<format>/ laid out as Kyutai's Hugging Face repos
`kyutai/moshiko-mlx-q4`, `-q8` and `-bf16` are (no config.json: moshi_mlx's `config_v0_1` is the
config those repos imply):

  model.q4.safetensors | model.q8.safetensors | model.safetensors
      moshi_mlx's own 7B model (`models.Lm(models.config_v0_1())`), set to bf16 and, for q4/q8,
      quantized by MLX's `nn.quantize` with the group sizes `moshi_mlx.local` uses (32 for q4,
      64 for q8): the tensor names, dtypes and shapes `Lm.load_weights(strict=True)` accepts.
      Random values from MLX's own initialisers (seeded). ~4.8 GB (q4), ~8.2 GB (q8), ~15 GB (bf16).
  tokenizer-e351c8d8-checkpoint125.safetensors
      a published-size Mimi from PyPI `moshi` (`loaders.get_mimi(None)`, random, seeded), saved with
      the published files' names (attention `in_proj_weight` stacked, `out_proj.weight`), f32.
      Shared between the formats by a hard link.
  tokenizer_spm_32k_3.model
      a 32 000-piece SentencePiece ModelProto (Moshi's special ids 0 <unk>, 1 <s>, 2 </s>,
      3 <pad>, 256 byte pieces, then word pieces), written field by field.

Memory: MLX arrays are lazy; each tensor is evaluated on its own, so the peak is about the output
file's size plus a few hundred MB. Time: about 5 minutes per format on 2 cores.

Requirements: `pip install moshi "mlx[cpu]"` and `pip install --no-deps moshi_mlx`.
"""

import os

os.environ.setdefault("NO_TORCH_COMPILE", "1")

import struct
import sys
import time
from pathlib import Path

SEED = 7
MIMI_FILE = "tokenizer-e351c8d8-checkpoint125.safetensors"
TOKENIZER_FILE = "tokenizer_spm_32k_3.model"
FORMATS = {  # format → (bits, group, file name) as moshi_mlx.local quantizes
    "q4": (4, 32, "model.q4.safetensors"),
    "q8": (8, 64, "model.q8.safetensors"),
    "bf16": (None, None, "model.safetensors"),
}


def log(msg: str):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def write_lm(path: Path, bits, group, temporal_layers=None):
    import mlx.core as mx
    import mlx.nn as nn
    from mlx.utils import tree_flatten
    from moshi_mlx import models

    mx.random.seed(SEED)
    cfg = models.config_v0_1()
    if temporal_layers is not None:
        cfg.transformer.num_layers = temporal_layers
    model = models.Lm(cfg)
    model.set_dtype(mx.bfloat16)
    if bits is not None:
        nn.quantize(model, bits=bits, group_size=group)
    params = dict(tree_flatten(model.parameters()))
    total = 0
    for i, (name, v) in enumerate(params.items()):
        mx.eval(v)  # one tensor at a time: its bf16 source is freed once it is quantized
        total += v.nbytes
        if i % 200 == 0:
            log(f"  {i}/{len(params)} tensors evaluated, {total / 1e9:.2f} GB")
    mx.save_safetensors(str(path), params)
    log(f"  {path.name}: {len(params)} tensors, {path.stat().st_size / 1e9:.2f} GB")


def write_mimi(path: Path):
    import torch
    from moshi.models import loaders
    from safetensors.torch import save_file

    torch.manual_seed(SEED)
    mimi = loaders.get_mimi(None, device="cpu")
    out = {}
    for k, v in mimi.state_dict().items():
        if k.endswith("._embedding"):
            continue  # derived from embedding_sum / cluster_usage at load
        nk = k.replace(".self_attn.in_projs.0.weight", ".self_attn.in_proj_weight")
        nk = nk.replace(".self_attn.out_projs.0.weight", ".self_attn.out_proj.weight")
        assert "in_projs" not in nk and "out_projs" not in nk, k
        out[nk] = v.detach().to(torch.float32).contiguous().clone()
    save_file(out, str(path))
    log(f"  {path.name}: {len(out)} tensors, {path.stat().st_size / 1e6:.1f} MB")


# ---- a SentencePiece ModelProto, field by field (protobuf wire format) ------------------------


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field_bytes(num: int, data: bytes) -> bytes:
    return varint(num << 3 | 2) + varint(len(data)) + data


def field_varint(num: int, value: int) -> bytes:
    return varint(num << 3) + varint(value)


def field_float(num: int, value: float) -> bytes:
    return varint(num << 3 | 5) + struct.pack("<f", value)


NORMAL, UNKNOWN, CONTROL, BYTE = 1, 2, 3, 6


def write_tokenizer(path: Path, size: int = 32000):
    pieces = [("<unk>", 0.0, UNKNOWN), ("<s>", 0.0, CONTROL), ("</s>", 0.0, CONTROL), ("<pad>", 0.0, CONTROL)]
    pieces += [(f"<0x{b:02X}>", 0.0, BYTE) for b in range(256)]
    letters = "abcdefghijklmnopqrstuvwxyz"
    i = 0
    while len(pieces) < size:
        # Distinct word pieces: "▁" + a base-26 spelling of i, half of them without the "▁".
        n, word = i, ""
        while True:
            word = letters[n % 26] + word
            n //= 26
            if not n:
                break
        piece = ("\u2581" if i % 2 == 0 else "") + word
        pieces.append((piece, -float(len(pieces)) / size, NORMAL))
        i += 1
    body = b"".join(
        field_bytes(1, field_bytes(1, p.encode()) + field_float(2, s) + field_varint(3, t)) for p, s, t in pieces
    )
    # trainer_spec (2): model_type UNIGRAM (3: 1), vocab_size (4), byte_fallback (35: true),
    # unk/bos/eos/pad ids (40..43); normalizer_spec (3): name "identity" (1), add_dummy_prefix (3).
    trainer = field_varint(3, 1) + field_varint(4, size) + field_varint(35, 1)
    trainer += field_varint(40, 0) + field_varint(41, 1) + field_varint(42, 2) + field_varint(43, 3)
    normalizer = field_bytes(1, b"identity") + field_varint(3, 1)
    body += field_bytes(2, trainer) + field_bytes(3, normalizer)
    path.write_bytes(body)
    log(f"  {path.name}: {len(pieces)} pieces, {len(body) / 1e3:.0f} kB")


def main():
    if len(sys.argv) < 2 or sys.argv[1] in ("-h", "--help"):
        print(__doc__)
        sys.exit(0 if len(sys.argv) >= 2 else 2)
    out = Path(sys.argv[1])
    args = sys.argv[2:]
    layers = None
    if "--temporal-layers" in args:
        i = args.index("--temporal-layers")
        try:
            layers = int(args[i + 1])
        except (IndexError, ValueError):
            sys.exit("--temporal-layers takes a whole number of layers (1 to 32)")
        if not 1 <= layers <= 32:
            sys.exit(f"--temporal-layers takes 1 to 32 layers, got {layers}")
        del args[i : i + 2]
    formats = args or ["q4", "q8"]
    for f in formats:
        if f not in FORMATS:
            sys.exit(f"unknown format '{f}' (formats: {', '.join(FORMATS)})")
    out.mkdir(parents=True, exist_ok=True)
    shared = out / ".shared"
    shared.mkdir(exist_ok=True)
    if not (shared / MIMI_FILE).exists():
        log("Mimi (published size, random)")
        write_mimi(shared / MIMI_FILE)
    if not (shared / TOKENIZER_FILE).exists():
        log("tokenizer (32 000 pieces)")
        write_tokenizer(shared / TOKENIZER_FILE)
    for f in formats:
        bits, group, name = FORMATS[f]
        d = out / (f"moshiko-mlx-{f}" if layers is None else f"moshiko-mlx-{f}-{layers}-layers")
        d.mkdir(exist_ok=True)
        if layers is not None:
            (d / "config.json").write_text(f'{{"num_layers": {layers}}}\n')
        for s in (MIMI_FILE, TOKENIZER_FILE):
            if not (d / s).exists():
                os.link(shared / s, d / s)
        if (d / name).exists():
            log(f"{d / name} exists, kept")
            continue
        log(f"moshiko-mlx-{f}: {name}")
        tmp = d / (name + ".partial.safetensors")
        write_lm(tmp, bits, group, layers)
        tmp.rename(d / name)
    log(f"done: {', '.join(str(d) for d in sorted(out.glob('moshiko-mlx-*')))}")


if __name__ == "__main__":
    main()
