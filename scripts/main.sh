#!/usr/bin/env bash
# The main job: build the command-line tool and run it on this machine's GPU: adapter report,
# a Mimi round trip of a spoken sentence through a fixture model, a conversation with a tiny
# Moshi (speech, transcript, tokens), the Mimi benchmark at the published model's size (random
# weights), and the kernel benchmark. `PARLE_BENCH_LM=1` adds the 7B frame benchmark (q4,
# random weights made on the GPU: about 7 GB of GPU memory; minutes per frame on a CPU adapter).
set -euo pipefail
source "$(dirname "$0")/env.sh"
cargo build --release --bin parle
parle="$TARGET_DIR/release/parle"
out="$TARGET_DIR/main-job"
mkdir -p "$out"
echo "+ parle info"
"$parle" info
echo "+ parle mimi roundtrip (tiny fixture model, espeak-ng sentence at 22.05 kHz)"
"$parle" mimi roundtrip --model tests/fixtures/mimi/tiny_c tests/fixtures/mimi/speech.wav -o "$out/roundtrip.wav"
echo "+ parle run (tiny delay-1 Moshi fixture, espeak-ng speech as the microphone)"
"$parle" run --model tests/fixtures/lm/delay1 --input tests/fixtures/lm/delay1/user.wav \
  --output "$out/moshi.wav" --text "$out/moshi.txt" --tokens "$out/moshi-tokens.safetensors"
echo "+ parle bench mimi --random-real-size"
"$parle" bench mimi --random-real-size --frames "${PARLE_BENCH_FRAMES:-20}"
echo "+ parle bench kernels"
"$parle" bench kernels
if [ "${PARLE_BENCH_LM:-0}" = 1 ]; then
  echo "+ parle bench lm --random-real-size --quant q4"
  "$parle" bench lm --random-real-size --quant q4 --frames "${PARLE_BENCH_FRAMES:-20}"
fi
