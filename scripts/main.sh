#!/usr/bin/env bash
# The main job: build the command-line tool and run it on this machine's GPU: adapter report,
# a Mimi round trip of a spoken sentence through a fixture model, the Mimi benchmark at the
# published model's size (random weights), and the kernel benchmark.
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
echo "+ parle bench mimi --random-real-size"
"$parle" bench mimi --random-real-size --frames "${PARLE_BENCH_FRAMES:-20}"
echo "+ parle bench kernels"
"$parle" bench kernels
