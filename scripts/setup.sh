#!/usr/bin/env bash
# Install what parle needs on Debian/Ubuntu (as root), skipping what is already there.
#   scripts/setup.sh main   what the main job needs (`npm run main`): a C linker, Vulkan (lavapipe), Node
#   scripts/setup.sh        everything the tests need (`npm test`): also Chromium + chromedriver,
#                           the wasm32 Rust target, clippy, rustfmt and wasm-bindgen-cli 0.2.130
# Rust itself (rustup, cargo) must already be installed.
set -euo pipefail
export PATH="$HOME/.cargo/bin:$PATH"
export DEBIAN_FRONTEND=noninteractive
what="${1:-all}"

# Each need is checked by what it provides, not by package name (Node, say, may come from
# NodeSource with npm inside, where Debian's `npm` package cannot be installed).
missing=()
need() { # need CHECK-COMMAND PACKAGE...
  if ! eval "$1" >/dev/null 2>&1; then shift; missing+=("$@"); fi
}
need "command -v cc" gcc libc6-dev
need "ls /usr/share/vulkan/icd.d/lvp_icd*.json" mesa-vulkan-drivers libvulkan1
need "command -v node" nodejs
need "command -v npm" npm
if [ "$what" != main ]; then
  need "command -v chromium" chromium
  need "command -v chromedriver" chromium-driver
  # The echo test's speaker-to-microphone loopback (scripts/echo-test.mjs): a PulseAudio daemon
  # and its clients (pactl, paplay).
  need "command -v pulseaudio" pulseaudio
  need "command -v paplay" pulseaudio-utils
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends ca-certificates "${missing[@]}"
fi
[ "$what" = main ] && exit 0

rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
cargo clippy --version >/dev/null 2>&1 || rustup component add clippy
cargo fmt --version >/dev/null 2>&1 || rustup component add rustfmt
# The CLI must match the crate's pinned wasm-bindgen (Cargo.toml: =0.2.130).
if [ "$(wasm-bindgen --version 2>/dev/null)" != "wasm-bindgen 0.2.130" ] ||
  ! command -v wasm-bindgen-test-runner >/dev/null; then
  cargo install wasm-bindgen-cli --version 0.2.130
fi
