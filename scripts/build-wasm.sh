#!/usr/bin/env bash
# Build the wasm package the page loads: web/pkg/parle.js + parle_bg.wasm, then the app shell's
# build id (web/version.js, scripts/shell-version.mjs) that names the service worker's cache.
# (No wasm-opt: Debian's binaryen produces broken modules.)
set -euo pipefail
source "$(dirname "$0")/env.sh"
cargo build --release --target wasm32-unknown-unknown --lib
wasm-bindgen --target web --out-dir web/pkg "$TARGET_DIR/wasm32-unknown-unknown/release/parle.wasm"
ls -l web/pkg/parle.js web/pkg/parle_bg.wasm
node scripts/shell-version.mjs web
