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
    golden::check_formats_greedy(&ctx, |l| log(&format!("in browser: {l}"))).await;
}

/// PyPI `moshi`'s greedy run of the tiny delay-1 Moshi, end to end through `Session` in the
/// browser: every token of every frame identical.
#[wasm_bindgen_test]
async fn delay1_greedy_in_browser() {
    let ctx = Context::new(&Options::default())
        .await
        .expect("no WebGPU adapter in this browser");
    let fx = moshi_fixture!("delay1");
    golden::check_moshi_greedy(&ctx, &fx, true, |l| log(&format!("in browser: {l}"))).await;
}
