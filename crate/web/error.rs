//! The one place that turns an [`ErrorCode`] into the string code the page reads as `e.code`.
//!
//! Codes: `input` (bad argument or option), `busy` (another call is running), `no-model` (load
//! first), `config` (config file), `weights` (weights or tokenizer file), `oom` (GPU out of
//! memory), `device-lost` (reopen the GPU), `limits` (GPU too small), `no-adapter` (no usable
//! GPU), `gpu` (any other GPU failure). The worker adds `no-webgpu`, `quota`, `download` and
//! `audio` for faults it finds itself.

use wasm_bindgen::JsValue;

use crate::ErrorCode;

/// The page's name for an error kind.
pub(crate) fn code_str(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::Input => "input",
        ErrorCode::Busy => "busy",
        ErrorCode::NoModel => "no-model",
        ErrorCode::Config => "config",
        ErrorCode::Weights => "weights",
        ErrorCode::OutOfMemory => "oom",
        ErrorCode::DeviceLost => "device-lost",
        ErrorCode::Limits => "limits",
        ErrorCode::NoAdapter => "no-adapter",
        ErrorCode::Gpu => "gpu",
    }
}

/// A JavaScript `Error` with `message` and its kind as `code`.
pub(crate) fn error(code: ErrorCode, message: &str) -> JsValue {
    let e = js_sys::Error::new(message);
    let _ = js_sys::Reflect::set(&e, &"code".into(), &code_str(code).into());
    e.into()
}

/// A JavaScript `Error` for any engine error, coded by its kind.
pub(crate) fn from_error(e: impl Into<crate::Error>) -> JsValue {
    let e = e.into();
    error(e.code(), &e.to_string())
}
