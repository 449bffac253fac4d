#!/usr/bin/env bash
# Every test: `scripts/test.sh` (= `npm test`) runs all stages; `scripts/test.sh browser page`
# runs only the stages named. Every stage runs even when an earlier one fails; the summary at the
# end gives each stage's result and duration, and the exit status is non-zero if any failed.
#
# Stages:
#   standalone  no tracked file refers to anything outside the repository (a sibling "shared"
#               folder, one machine's absolute paths, a symlink that leaves the tree)
#   layers      the layering rules that a grep can check: crate/weights and crate/text use
#               nothing of the GPU layers (gpu, kernels, nn and above), every layer only those
#               below it (ARCHITECTURE.md); no crate/**/*.rs file
#               has more than 800 lines (split it by job)
#   fmt         cargo fmt --check
#   clippy      cargo clippy -D warnings, native and wasm32
#   native      cargo test: unit tests and the kernel tests on the native GPU (lavapipe in CI)
#   fallback    the kernel tests again with PARLE_NO_SUBGROUPS=1 PARLE_FORCE_F32=1
#   no-adapter  `parle info` without any GPU must fail with a clear message
#   browser     the kernel tests and the Mimi golden test in headless Chromium's WebGPU
#               (tests/web.rs, tests/web_mimi.rs, wasm-bindgen-test)
#   wasm-pkg    the wasm package for the page (web/pkg), with its size (raw and gzip)
#   worklets    the audio worklets' framing, resampling and jitter buffer, in Node
#   server      npm start's server in Node (scripts/server-test.mjs): Range, HEAD, If-Range, ETags,
#               what it refuses (dotfiles, links out of the folder, foreign Host, other methods,
#               bad paths), security headers, a load test on a 3 GiB sparse file, aborted
#               downloads, a low ulimit -n, the CLI's usage errors and --host warning
#   js-api      web/parle.js in headless Chromium (Playwright): fixture models against the
#               native CLI's outputs, downloads (progress, Range resumption, OPFS, quota), errors;
#               the store's integrity checks (changed files, sizes, SHA-256, store keys, names)
#               and Kyutai STT (group stt): text tokens and extra heads equal PyPI moshi's;
#               a bf16 LM converted at load (group quant): tokens, estimate, the page's note
#   page        the app in headless Chromium: a 10 s conversation through the fake microphone,
#               stats, recording, device loss and restart, offline reload; the Captions view
#               of an STT model (group captions): transcript, word times, end of turn, .txt/.vtt, Copy
#               the Translate view of a Hibiki model (group translate): its text, text and audio
#               tokens against a step() replay, .txt, Copy
#   page-echo   the playback paths for echo cancellation (direct, local WebRTC loopback, fallback)
#   echo        echo cancellation measured through a PulseAudio speaker-to-microphone loopback,
#               for the direct and the peer playback path (scripts/echo-test.mjs)
#   page-errors the app and API without a GPU adapter, without WebGPU, with the microphone
#               denied; npm start's server (MIME types, Range, --models DIR)
set -uo pipefail
source "$(dirname "$0")/env.sh"

ALL=(standalone layers fmt clippy native fallback no-adapter browser wasm-pkg worklets server js-api page page-echo echo page-errors)
STAGES=("$@")
[ ${#STAGES[@]} -eq 0 ] && STAGES=("${ALL[@]}")

# A clone must build and pass its tests with nothing beside it: no tracked file may point into a
# sibling `shared` folder or at one machine's home or work directories, and no tracked symlink may
# leave the repository. (The patterns are assembled so that this file does not match itself.)
stage_standalone() {
  local up='\.\.' sib='/shared' bad rc=0
  bad="$(git ls-files -z | xargs -0 grep -nIE -e "${up}${sib}\b" -e "(^|[^A-Za-z0-9_.])/(work|root|home/[A-Za-z0-9_.-]+)/" 2>/dev/null)"
  if [ -n "$bad" ]; then
    echo "tracked files refer to paths outside the repository:"
    echo "$bad"
    rc=1
  fi
  local link target
  while IFS= read -r link; do
    target="$(realpath -m "$link")"
    case "$target" in
      "$ROOT"/*) ;;
      *) echo "tracked symlink leaves the repository: $link -> $(readlink "$link")"; rc=1 ;;
    esac
  done < <(git ls-files -s | awk '$1 == "120000" { print $4 }')
  [ $rc -eq 0 ] && echo "no tracked file refers outside the repository ($(git ls-files | wc -l) files checked)"
  return $rc
}

# The layers of ARCHITECTURE.md, where a grep can tell: the file readers (crate/weights,
# crate/text) know no GPU, so they name no module of the GPU layers or above, nor wgpu.
stage_layers() {
  local bad rc=0
  bad="$(grep -rnE 'crate::(gpu|kernels|nn|mimi|lm|session|web)\b|crate::\{[^}]*\b(gpu|kernels|nn|mimi|lm|session|web)\b|\bwgpu::' crate/weights crate/text)"
  if [ -n "$bad" ]; then
    echo "crate/weights and crate/text must not use the GPU layers (move that code to crate/nn or crate/kernels):"
    echo "$bad"
    rc=1
  else
    echo "crate/weights and crate/text use no GPU layer"
  fi
  local long
  long="$(find crate -name '*.rs' -print0 | xargs -0 wc -l | awk '$2 != "total" && $1 > 800 { print "  " $2 ": " $1 " lines" }')"
  if [ -n "$long" ]; then
    echo "Rust files over 800 lines (split them into modules with one job each):"
    echo "$long"
    rc=1
  else
    echo "no Rust file in crate/ has more than 800 lines"
  fi
  # The front ends (CLI, page engine) go through the session: they name no model layer.
  local front
  front="$(grep -rnE 'crate::(lm|mimi|nn)\b|parle::(lm|mimi|nn)\b' crate/cli crate/web)"
  if [ -n "$front" ]; then
    echo "crate/cli and crate/web must reach the models only through crate/session:"
    echo "$front"
    rc=1
  else
    echo "crate/cli and crate/web use no nn, mimi or lm"
  fi
  # Downward only, as ARCHITECTURE.md's "What each layer may use" says.
  local rule dir pat found
  for rule in \
    "crate/gpu|weights|text|kernels|nn|mimi|lm|session|web|cli" \
    "crate/kernels|nn|mimi|lm|session|web|cli" \
    "crate/nn|mimi|lm|session|web|cli" \
    "crate/mimi|lm|session|web|cli" \
    "crate/lm|mimi|session|web|cli" \
    "crate/session|web|cli" \
    "crate/cli|web" \
    "crate/web|cli"; do
    dir="${rule%%|*}"
    pat="${rule#*|}"
    found="$(grep -rnE "crate::($pat)\b|crate::\{[^}]*\b($pat)\b" "$dir")"
    if [ -n "$found" ]; then
      echo "$dir must not use $pat (dependencies point down: ARCHITECTURE.md):"
      echo "$found"
      rc=1
    fi
  done
  [ $rc -eq 0 ] && echo "every layer uses only the layers below it"
  return $rc
}

stage_fmt() {
  cargo fmt --all -- --check
}

stage_clippy() {
  cargo clippy --all-targets -- -D warnings &&
    cargo clippy --target wasm32-unknown-unknown --all-targets -- -D warnings
}

stage_native() {
  cargo test -- --show-output
}

stage_fallback() {
  PARLE_NO_SUBGROUPS=1 PARLE_FORCE_F32=1 cargo test --test kernels -- --show-output
}

stage_no-adapter() {
  cargo build --bin parle || return 1
  local out rc
  out="$(VK_ICD_FILENAMES=/nonexistent WGPU_BACKEND=vulkan "$TARGET_DIR/debug/parle" info 2>&1)"
  rc=$?
  echo "$out"
  echo "(exit status $rc)"
  if [ $rc -eq 0 ]; then
    echo "parle info succeeded without a GPU driver; it must fail"
    return 1
  fi
  if ! grep -q "no GPU adapter found" <<<"$out"; then
    echo "parle info failed without saying that no GPU adapter was found"
    return 1
  fi
}

stage_browser() {
  local log
  log="$(mktemp)"
  cargo test --target wasm32-unknown-unknown --test web --test web_mimi --test web_lm -- --nocapture 2>&1 | tee "$log"
  local rc=${PIPESTATUS[0]}
  # The runner prints cargo's "test result:" line; make sure the adapter was really the browser's.
  if [ $rc -eq 0 ] && ! grep -q "BrowserWebGpu" "$log"; then
    echo "the browser tests passed without reporting a browser WebGPU adapter"
    rc=1
  fi
  rm -f "$log"
  return $rc
}

stage_wasm-pkg() {
  bash scripts/build-wasm.sh || return 1
  local raw gz
  raw=$(stat -c %s web/pkg/parle_bg.wasm)
  gz=$(gzip -9 -c web/pkg/parle_bg.wasm | wc -c)
  echo "wasm package: $raw bytes raw, $gz bytes gzip (target: at most 600 KB gzip)"
  [ "$gz" -le 614400 ]
}

stage_worklets() {
  node scripts/worklet-test.mjs
}

stage_server() {
  node scripts/server-test.mjs
}

# The browser tests compare with the native CLI's outputs (parle run): build it first (a no-op
# when the no-adapter stage has built it).
page_test() {
  cargo build --bin parle || return 1
  node scripts/page-test.mjs "$@"
}

stage_js-api() {
  page_test api store stt heap profile hibiki quant
}

stage_page() {
  page_test page captions translate
}

stage_page-echo() {
  page_test echo
}

stage_echo() {
  node scripts/echo-test.mjs
}

stage_page-errors() {
  page_test errors server
}

declare -A RESULT DURATION
for s in "${STAGES[@]}"; do
  if ! declare -F "stage_$s" >/dev/null; then
    echo "unknown stage '$s' (stages: ${ALL[*]})" >&2
    exit 2
  fi
done
# Each stage's output is also kept in target/stage-logs/, so that the summary can repeat a failed
# stage's failing lines: a CI log cut to its head and tail still says what failed.
LOGS="$ROOT/target/stage-logs"
mkdir -p "$LOGS"
for s in "${STAGES[@]}"; do
  echo
  echo "==== $s ===="
  t0=$SECONDS
  if "stage_$s" > >(tee "$LOGS/$s.log") 2>&1; then RESULT[$s]=ok; else RESULT[$s]=FAILED; fi
  wait $! 2>/dev/null  # the tee, so the log is whole before the next stage starts
  DURATION[$s]=$((SECONDS - t0))
  echo "==== $s: ${RESULT[$s]} (${DURATION[$s]} s)"
done

echo
echo "==== summary"
passed=0
failed=0
for s in "${STAGES[@]}"; do
  printf '  %-11s %-7s %5d s\n' "$s" "${RESULT[$s]}" "${DURATION[$s]}"
  if [ "${RESULT[$s]}" = ok ]; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
done
for s in "${STAGES[@]}"; do
  [ "${RESULT[$s]}" = ok ] && continue
  echo
  echo "==== $s failed; its failing lines (whole log: target/stage-logs/$s.log):"
  grep -aE '^(FAIL |test .* FAILED|thread .* panicked|error(\[|:)|---- .* stdout ----)' "$LOGS/$s.log" | cut -c1-400 | head -40
  echo "  … and its last lines:"
  tail -n 12 "$LOGS/$s.log" | cut -c1-400
done
echo "stages: $passed passed, $failed failed"
[ $failed -eq 0 ]
