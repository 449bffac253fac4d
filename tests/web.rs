//! The same kernel cases in the browser's WebGPU (headless Chromium through wasm-bindgen-test),
//! so that shaders Tint rejects are caught. Small shapes: SwiftShader is slow.
#![cfg(target_arch = "wasm32")]

mod cases;
mod common;

use common::{log, run_cases, Size};
use parle::gpu::{Context, Options};
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

async fn context(opts: Options) -> Context {
    let ctx = Context::new(&opts)
        .await
        .expect("no WebGPU adapter in this browser");
    log(&ctx.caps().report().replace('\n', "\n  "));
    ctx
}

async fn run_all(opts: Options) {
    let ctx = context(opts).await;
    assert!(ctx.caps().web, "expected the browser WebGPU backend");
    let mut failures = Vec::new();
    for (family, cases) in cases::all() {
        if let Err(e) = run_cases(&ctx, family, cases, Size::Small).await {
            failures.push(e);
        }
    }
    if let Err(e) = ctx.check() {
        failures.push(format!("device error: {e}"));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[wasm_bindgen_test]
async fn kernels_in_browser() {
    run_all(Options::default()).await;
}

#[wasm_bindgen_test]
async fn kernels_in_browser_without_subgroups() {
    run_all(Options {
        no_subgroups: true,
        ..Default::default()
    })
    .await;
}
