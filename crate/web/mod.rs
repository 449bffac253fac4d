//! wasm-bindgen exports for the page's worker (`web/worker.js`).
//!
//! The worker owns one GPU context, opened on first use and reopened when the options change.
//! Every export rejects with a message that names the cause (no WebGPU, no adapter, device too
//! small, shader rejected, …), which the page shows as is.
//!
//! `engine` drives a conversation (`engineLoad`, `engineStep`, …) for `web/parle.js`; `source`
//! reads model files that the worker keeps in the Origin Private File System (or the user picked)
//! one tensor at a time; `hash` is the SHA-256 the worker checks downloads with; `estimate` is the
//! GPU-memory estimate `engine.inspect()` gives before a download; `model` is the
//! model-directory resolver and typed config `web/store.js` asks; `options` the serde types of
//! the exports' JSON options.

use std::cell::RefCell;
use std::rc::Rc;

use wasm_bindgen::prelude::*;

use crate::gpu::{Context, GpuError, Options, Recorder};
use crate::kernels::elementwise;

mod engine;
mod error;
mod estimate;
mod hash;
mod model;
mod options;
mod source;

#[wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
}

/// The crate version, for the page's footer and bug reports.
#[wasm_bindgen]
pub fn version() -> String {
    env!("CARGO_PKG_VERSION").into()
}

/// `(force_f32, no_subgroups, timestamps)`: the options a context was opened with.
type OptionsKey = (bool, bool, bool);

thread_local! {
    /// The worker's context and the options it was opened with.
    static GPU: RefCell<Option<(OptionsKey, Rc<Context>)>> = const { RefCell::new(None) };
}

fn js_err(e: GpuError) -> JsValue {
    error::from_error(e)
}

/// The worker's context for these options, opening (or reopening) it if needed.
async fn context(force_f32: bool, no_subgroups: bool) -> Result<Rc<Context>, JsValue> {
    context_with(force_f32, no_subgroups, false).await
}

/// [`context`], with `timestamp-query` requested when `timestamps` (profiles only).
async fn context_with(
    force_f32: bool,
    no_subgroups: bool,
    timestamps: bool,
) -> Result<Rc<Context>, JsValue> {
    let key = (force_f32, no_subgroups, timestamps);
    let cached = GPU.with(|g| {
        g.borrow()
            .as_ref()
            .filter(|(k, _)| *k == key)
            .map(|(_, c)| c.clone())
    });
    if let Some(ctx) = cached {
        if ctx.check().is_ok() {
            return Ok(ctx);
        }
    }
    let opts = Options {
        force_f32,
        no_subgroups,
        timestamps,
        ..Default::default()
    };
    let ctx = Rc::new(Context::new(&opts).await.map_err(js_err)?);
    GPU.with(|g| *g.borrow_mut() = Some((key, ctx.clone())));
    Ok(ctx)
}

/// Open the GPU and describe it as an object (the facts behind `parle info`'s report):
/// `{ adapter, backend, deviceType, driver, software, f16, f16Available, subgroups,
/// subgroupsAvailable, subgroupSize: [min, max], timestampQuery, limits: { maxBufferSize,
/// maxStorageBufferBindingSize, maxStorageBuffersPerShaderStage, maxComputeInvocationsPerWorkgroup,
/// maxComputeWorkgroupSizeX, maxComputeWorkgroupStorageSize, maxComputeWorkgroupsPerDimension,
/// minStorageBufferOffsetAlignment, minUniformBufferOffsetAlignment } }`. Rejects with a coded
/// error (`no-adapter`, `limits`, `gpu`) when no usable adapter is there.
#[wasm_bindgen(js_name = gpuInfo)]
pub async fn gpu_info(force_f32: bool, no_subgroups: bool) -> Result<JsValue, JsValue> {
    let ctx = context(force_f32, no_subgroups).await?;
    let c = ctx.caps();
    let obj = js_sys::Object::new();
    let set = |o: &js_sys::Object, k: &str, v: JsValue| {
        let _ = js_sys::Reflect::set(o, &k.into(), &v);
    };
    set(&obj, "adapter", c.adapter_name.as_str().into());
    set(&obj, "backend", c.backend.as_str().into());
    set(&obj, "deviceType", c.device_type.as_str().into());
    set(&obj, "driver", c.driver.as_str().into());
    set(&obj, "software", c.is_software.into());
    set(&obj, "f16", c.f16.into());
    set(&obj, "f16Available", c.f16_available.into());
    set(&obj, "subgroups", c.subgroups.into());
    set(&obj, "subgroupsAvailable", c.subgroups_available.into());
    let size = js_sys::Array::of2(&c.subgroup_min_size.into(), &c.subgroup_max_size.into());
    set(&obj, "subgroupSize", size.into());
    set(&obj, "timestampQuery", c.timestamp_query.into());
    let limits = js_sys::Object::new();
    for (k, v) in [
        ("maxBufferSize", c.max_buffer_size as f64),
        ("maxStorageBufferBindingSize", c.max_storage_binding as f64),
        (
            "maxStorageBuffersPerShaderStage",
            c.max_storage_buffers_per_stage.into(),
        ),
        (
            "maxComputeInvocationsPerWorkgroup",
            c.max_invocations_per_workgroup.into(),
        ),
        ("maxComputeWorkgroupSizeX", c.max_workgroup_size_x.into()),
        (
            "maxComputeWorkgroupStorageSize",
            c.max_workgroup_storage.into(),
        ),
        (
            "maxComputeWorkgroupsPerDimension",
            c.max_workgroups_per_dimension.into(),
        ),
        (
            "minStorageBufferOffsetAlignment",
            c.min_storage_offset_alignment.into(),
        ),
        (
            "minUniformBufferOffsetAlignment",
            c.min_uniform_offset_alignment.into(),
        ),
    ] {
        set(&limits, k, v.into());
    }
    set(&obj, "limits", limits.into());
    Ok(obj.into())
}

/// Run one kernel (exact-erf GELU over an odd-sized array) on the GPU, compare it with the CPU
/// reference and return a one-line summary. Rejects when the browser's shader compiler refuses
/// the kernel or the result is wrong.
#[wasm_bindgen(js_name = gpuSelfTest)]
pub async fn gpu_self_test(force_f32: bool, no_subgroups: bool) -> Result<String, JsValue> {
    const N: usize = 65_537;
    const TOL: f32 = 1e-5;
    let ctx = context(force_f32, no_subgroups).await?;
    // Deterministic inputs in [-6, 6): GELU's interesting range, both tails included.
    let x: Vec<f32> = (0..N)
        .map(|i| ((i as u64 * 2_654_435_761) % 1_000_003) as f32 / 1_000_003.0 * 12.0 - 6.0)
        .collect();
    let t0 = js_sys::Date::now();
    let xb = ctx.upload("self-test x", &x).map_err(js_err)?;
    let yb = ctx.upload("self-test y", &vec![0f32; N]).map_err(js_err)?;
    let mut rec = Recorder::new(&ctx, "self-test");
    elementwise::gelu_erf(&mut rec, xb.view(), yb.view(), N as u32).map_err(js_err)?;
    rec.submit().map_err(js_err)?;
    let got = ctx.read_f32(&yb).await.map_err(js_err)?;
    let ms = js_sys::Date::now() - t0;
    let want = elementwise::reference::gelu_erf(&x);
    // Relative error per element; a NaN counts as infinitely wrong.
    let err = |i: usize| {
        let e = (got[i] - want[i]).abs() / (1.0 + want[i].abs());
        if e.is_nan() {
            f32::INFINITY
        } else {
            e
        }
    };
    let at = (0..N.min(got.len()))
        .max_by(|&a, &b| err(a).total_cmp(&err(b)))
        .unwrap_or(0);
    let worst = if got.len() < N {
        f32::INFINITY
    } else {
        err(at)
    };
    if worst > TOL {
        return Err(error::error(crate::ErrorCode::Gpu, &format!(
            "GPU self-test failed: gelu_erf({}) gave {} where the CPU gives {} (error {worst:.2e} > {TOL:.0e})",
            x[at], got.get(at).copied().unwrap_or(f32::NAN), want[at]
        )));
    }
    Ok(format!(
        "gelu_erf on {N} values matches the CPU reference (max error {worst:.1e}); \
         upload + kernel + readback took {ms:.0} ms"
    ))
}
