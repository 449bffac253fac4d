#!/usr/bin/env bash
# The main job: build the command-line tool and run it on this machine's GPU.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cargo build --release --bin parle
parle="$TARGET_DIR/release/parle"
echo "+ parle info"
"$parle" info
echo "+ parle bench kernels"
"$parle" bench kernels
