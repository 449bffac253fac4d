//! wasm-bindgen exports for the page and its worker.

use wasm_bindgen::prelude::*;

use crate::gpu::{Context, Options};

#[wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
}

/// Open the GPU and describe it. Rejects with a message naming the cause when WebGPU is missing.
#[wasm_bindgen(js_name = gpuInfo)]
pub async fn gpu_info(force_f32: bool, no_subgroups: bool) -> Result<String, JsError> {
    let opts = Options {
        force_f32,
        no_subgroups,
        ..Default::default()
    };
    let ctx = Context::new(&opts)
        .await
        .map_err(|e| JsError::new(&e.to_string()))?;
    Ok(ctx.caps().report())
}
