//! The LM in the browser: the wasm build on Chromium's WebGPU reproduces Kyutai's tiny test LM
//! (the same golden check as tests/lm.rs, with async readback only).
#![cfg(target_arch = "wasm32")]

mod golden;

use parle::gpu::{Context, Options};
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

fn log(s: &str) {
    web_sys::console::log_1(&s.into());
}

#[wasm_bindgen_test]
async fn kyutai_test_lm_in_browser() {
    let ctx = Context::new(&Options::default())
        .await
        .expect("no WebGPU adapter in this browser");
    log(&format!(
        "lm in browser on '{}' ({})",
        ctx.caps().adapter_name,
        ctx.caps().backend
    ));
    golden::check_kyutai_test_lm(&ctx, log).await;
}

/// The tiny LM in every published format, loaded in its own layout in the browser: greedy
/// tokens equal to PyPI moshi's on the weights each file encodes (same check as tests/lm.rs).
#[wasm_bindgen_test]
async fn formats_greedy_tokens_in_browser() {
    let ctx = Context::new(&Options::default())
        .await
        .expect("no WebGPU adapter in this browser");
    let mut failures = Vec::new();
    for (i, f) in golden::FORMATS.iter().enumerate() {
        let r = golden::formats_greedy(&ctx, i).await.unwrap();
        log(&format!(
            "{} in browser: {} tokens compared, smallest logit gap {:.3}, {}",
            f.0,
            r.compared,
            r.max_err,
            if r.lines.is_empty() {
                "all equal"
            } else {
                "MISMATCH"
            }
        ));
        assert_eq!(r.compared, 12 * 9, "{}", r.lines.join("\n"));
        failures.extend(r.lines);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// PyPI `moshi`'s greedy run of the tiny delay-1 Moshi, end to end through `Session` in the
/// browser: every token of every frame identical.
#[wasm_bindgen_test]
async fn delay1_greedy_in_browser() {
    let ctx = Context::new(&Options::default())
        .await
        .expect("no WebGPU adapter in this browser");
    let fx = moshi_fixture!("delay1");
    let r = golden::moshi_greedy(&ctx, &fx, true).await.unwrap();
    log(&format!(
        "delay1 greedy in browser: {} frames × 9 tokens, {} mismatches, {} near-tie excuses, {} user-code mismatches, output audio max |err| {:.2e}",
        r.frames,
        r.token_mismatches.len(),
        r.near_tie_excuses.len(),
        r.user_code_mismatches,
        r.pcm_max_err
    ));
    assert!(
        r.token_mismatches.is_empty(),
        "{}",
        r.token_mismatches.join("\n")
    );
    assert!(r.frames >= 60);
    assert_eq!(r.user_code_mismatches, 0);
    assert!(r.pcm_max_err < 1e-4);
}
