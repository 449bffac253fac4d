//! `engineEstimate`: the GPU memory a model will take, before it is downloaded, from its
//! `config.json` and the LM checkpoint's header (the worker hands a file whose `readInto`
//! serves the first bytes it fetched with a Range request): the same
//! [`crate::session::estimate`] that `parle info --model` prints, exported to the page.

use serde_json::{json, Value};
use wasm_bindgen::prelude::*;

use super::error::{error, from_error};
use super::options::quant_option;
use super::source::{JsContainer, JsFile};
use crate::session::estimate::estimate_sources;
use crate::session::{SessionOptions, WeightOptions};
use crate::ErrorCode;

/// `options` is JSON `{ f16, codebooks, quant }` (`f16`: the adapter has shader-f16, so the LM's
/// KV caches are f16; `codebooks`: the Mimi loopback's; `quant`: the format `load()`'s `quant`
/// converts the LM's linears to, as `parle info --model --quant` counts them). `config` is `config.json`'s text or `null`,
/// `lm` the LM checkpoint (only its header is read) or `null` for the Mimi loopback. Returns JSON
/// `{ total, lmWeights, lmTables, lmKvCache, lmActivations, mimiWeights, mimiKvCache,
/// mimiState, mimiActivations, io }` in bytes.
#[wasm_bindgen(js_name = engineEstimate)]
pub fn engine_estimate(
    options: String,
    config: Option<String>,
    lm: Option<JsFile>,
) -> Result<String, JsValue> {
    let opts: Value = serde_json::from_str(&options)
        .map_err(|e| error(ErrorCode::Input, &format!("bad options: {e}")))?;
    let f16 = opts.get("f16").and_then(Value::as_bool).unwrap_or(false);
    let quant = quant_option(opts.get("quant").and_then(Value::as_str), "inspect")?;
    let session_opts = SessionOptions {
        codebooks: opts
            .get("codebooks")
            .and_then(Value::as_u64)
            .map(|n| n as usize),
        weights: WeightOptions { quant },
        ..SessionOptions::default()
    };
    let lm = match lm {
        Some(f) => Some(Box::new(JsContainer::open(f).map_err(from_error)?) as _),
        None => None,
    };
    let e = estimate_sources(config.as_deref(), lm, &session_opts, f16).map_err(from_error)?;
    Ok(json!({
        "total": e.total(),
        "lmWeights": e.lm_weights,
        "lmTables": e.lm_tables,
        "lmKvCache": e.lm_kv_cache,
        "lmActivations": e.lm_activations,
        "mimiWeights": e.mimi_weights,
        "mimiKvCache": e.mimi_kv_cache,
        "mimiState": e.mimi_state,
        "mimiActivations": e.mimi_activations,
        "io": e.io,
    })
    .to_string())
}
