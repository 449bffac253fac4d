//! The engine behind `web/parle.js`: one [`Session`] per worker, driven frame by frame.
//!
//! The worker (`web/worker.js`) downloads or opens the model files and passes them here as
//! [`JsFile`]s; [`engine_load`] builds the session tensor by tensor, [`engine_step`] runs one
//! 80 ms frame (Mimi encode → LM step → Mimi decode, one submit, one async readback). The session
//! lives in a thread-local slot; an async export takes it out for the duration of its await and
//! puts it back, so no `RefCell` borrow is ever held across an await.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use serde_json::json;
use wasm_bindgen::prelude::*;

use super::error::{error, from_error};
use super::model::{sampling_json, typed_config};
use super::options::{parse, quant_option, BenchOptions, ConfigureOptions, LoadOptions};
use super::source::{JsContainer, JsFile};
use crate::gpu::Context;
use crate::session::bench::{run_frames, Preset, Workload};
use crate::session::profile::{profile_frames, ProfileReport};
use crate::session::{
    quant_format, Kind, ModelSources, Session, SessionOptions, StepOutput, WeightOptions,
    MAX_IN_FLIGHT,
};
use crate::text::Tokenizer;
use crate::weights::WeightsError;
use crate::ErrorCode;

thread_local! {
    /// The loaded session, when it is not out in an await.
    static SESSION: RefCell<Option<Session>> = const { RefCell::new(None) };
    /// Bumped on every load, reset-by-dispose: a step that finishes after a new load or a
    /// dispose drops its session instead of putting it back.
    static GENERATION: Cell<u64> = const { Cell::new(0) };
    /// A step is running (the session is out).
    static BUSY: Cell<bool> = const { Cell::new(false) };
    /// The context the session was loaded on.
    static CTX: RefCell<Option<Rc<Context>>> = const { RefCell::new(None) };
}

fn weights_error(e: WeightsError) -> JsValue {
    from_error(e)
}

/// Drop the session (and with it its GPU buffers).
fn drop_session() {
    GENERATION.with(|g| g.set(g.get() + 1));
    SESSION.with(|s| s.borrow_mut().take());
}

/// Build a session from the model files.
///
/// `options` is JSON: `{ forceF32, noSubgroups, codebooks, sampling: {…} }` (an unknown option or
/// a wrong type is an `input` error naming it; `sampling` is over the model's defaults,
/// `lm_gen_config`). `config` is the
/// text of `config.json` (or `null`), `mimi` the codec weights, `lm` the LM weights (`null`: the
/// Mimi loopback), `tokenizer` the SentencePiece model (optional). Resolves to a JSON description
/// of what was loaded: `kind`, `io`, `sampling` (in effect), `frameSize`, `latencyFrames`, `codebooks`, `gpuBytes`,
/// `largestTensor`, `loadMs`, `adapter`, `software`.
#[wasm_bindgen(js_name = engineLoad)]
pub async fn engine_load(
    options: String,
    config: Option<String>,
    mimi: JsFile,
    lm: Option<JsFile>,
    tokenizer: Option<JsFile>,
) -> Result<String, JsValue> {
    if BUSY.with(|b| b.get()) {
        return Err(error(
            ErrorCode::Busy,
            "a frame is still running: await it before loading",
        ));
    }
    let opts: LoadOptions = parse(&options, "engineLoad")?;
    let quant = quant_option(opts.quant.as_deref(), "engineLoad")?;
    // The config is read (once) before anything else: a config parle cannot run fails fast.
    let config = typed_config(config.as_deref())?;
    // The old session's buffers go before the new ones are made.
    drop_session();
    let ctx = super::context(opts.force_f32, opts.no_subgroups).await?;
    CTX.with(|c| *c.borrow_mut() = Some(ctx.clone()));
    let t0 = js_sys::Date::now();
    let mimi = JsContainer::open(mimi).map_err(weights_error)?;
    // The LM in any published format (safetensors PyTorch/MLX/candle names, MLX q4/q8, GGUF
    // Q8_0), presented under canonical names by the session, as `Session::load_dir` does.
    let lm = match lm {
        Some(f) => Some(JsContainer::open(f).map_err(weights_error)?),
        None => None,
    };
    let tokenizer = match (&lm, tokenizer) {
        (Some(_), Some(f)) => {
            let bytes = f.read_all().map_err(weights_error)?;
            Some(Tokenizer::from_bytes(&f.name(), &bytes).map_err(from_error)?)
        }
        _ => None,
    };
    let largest = mimi
        .largest_tensor()
        .max(lm.as_ref().map_or(0, |c| c.largest_tensor()));
    let before = ctx.allocated_bytes();
    let mut kind_of = config.clone();
    kind_of.codec_only = lm.is_none();
    let (model_kind, io) = (kind_of.kind().as_str(), kind_of.io());
    let sources = ModelSources {
        config,
        mimi: Box::new(mimi),
        lm: lm.map(|c| Box::new(c) as _),
        tokenizer,
    };
    let session_opts = SessionOptions {
        codebooks: opts.codebooks,
        sampling: opts.sampling.unwrap_or_default(),
        weights: WeightOptions { quant },
        cfg: opts.cfg,
        ..SessionOptions::default()
    };
    let session = Session::from_sources(&ctx, sources, &session_opts).map_err(from_error)?;
    ctx.check().map_err(from_error)?;
    let info = json!({
        "kind": match session.kind() { Kind::Moshi => model_kind, Kind::Mimi => "mimi", Kind::Stt => "stt", Kind::Hibiki => "hibiki" },
        "cfg": session.cfg(),
        "io": {
            "inputCodebooks": io.input_codebooks,
            "outputCodebooks": io.output_codebooks,
            "text": io.text,
        },
        "sampling": sampling_json(&session.sampling()),
        "frameSize": session.frame_size(),
        "sampleRate": 24000,
        "latencyFrames": session.latency_frames(),
        "codebooks": session.codebooks(),
        "gpuBytes": ctx.allocated_bytes() - before,
        "quant": opts.quant.as_deref().map(str::to_ascii_lowercase),
        "largestTensor": largest,
        "loadMs": js_sys::Date::now() - t0,
        "adapter": ctx.caps().adapter_name,
        "software": ctx.caps().is_software,
    });
    SESSION.with(|s| *s.borrow_mut() = Some(session));
    Ok(info.to_string())
}

/// Check `engineConfigure`'s options without applying them (the worker checks settings given
/// during a conversation at once, and applies them between frames): the same `input` errors.
#[wasm_bindgen(js_name = engineCheckConfigure)]
pub fn engine_check_configure(options: String) -> Result<(), JsValue> {
    let opts: ConfigureOptions = parse(&options, "engineConfigure")?;
    if let Some(c) = opts
        .cfg
        .filter(|c| !(c.is_finite() && *c > 0.0 && *c <= 100.0))
    {
        return Err(error(
            ErrorCode::Input,
            &format!("cfg must be a number in (0, 100], got {c}"),
        ));
    }
    opts.sampling()
        .apply(crate::session::Sampling::default())
        .map(|_| ())
        .map_err(|m| error(ErrorCode::Input, &m))
}

/// Change how tokens are drawn (JSON: `{ greedy, seed, textTemperature, textTopK,
/// audioTemperature, audioTopK, codebooks }`, each over the current value); applies from the next
/// frame.
#[wasm_bindgen(js_name = engineConfigure)]
pub fn engine_configure(options: String) -> Result<(), JsValue> {
    let opts: ConfigureOptions = parse(&options, "engineConfigure")?;
    SESSION.with(|s| match s.borrow_mut().as_mut() {
        Some(session) => {
            let sampling = opts
                .sampling()
                .apply(session.sampling())
                .map_err(|m| error(ErrorCode::Input, &m))?;
            if let Some(c) = opts.cfg {
                let ctx = current_ctx()?;
                session.set_cfg(&ctx, c).map_err(from_error)?;
            }
            session.configure(sampling);
            Ok(())
        }
        None if BUSY.with(|b| b.get()) => Err(error(
            ErrorCode::Busy,
            "a frame is running: configure between frames",
        )),
        None => Err(error(
            ErrorCode::NoModel,
            "no model is loaded: call load() first",
        )),
    })
}

/// Start a new conversation (the model forgets everything it heard and said).
#[wasm_bindgen(js_name = engineReset)]
pub fn engine_reset() -> Result<(), JsValue> {
    let ctx = CTX.with(|c| c.borrow().clone());
    SESSION.with(|s| match (s.borrow_mut().as_mut(), ctx) {
        (Some(session), Some(ctx)) => {
            session.reset(&ctx);
            Ok(())
        }
        _ if BUSY.with(|b| b.get()) => Err(error(
            ErrorCode::Busy,
            "a frame is running: reset between frames",
        )),
        _ => Err(error(
            ErrorCode::NoModel,
            "no model is loaded: call load() first",
        )),
    })
}

/// Free the session's GPU memory.
#[wasm_bindgen(js_name = engineDispose)]
pub fn engine_dispose() {
    drop_session();
    CTX.with(|c| c.borrow_mut().take());
}

/// The error of a frame: a destroyed device first shows as failed submits and readbacks (the lost
/// callback may follow); once the context knows it is lost, that is the error the page gets.
fn frame_error(ctx: &Context, e: crate::Error) -> JsValue {
    match ctx.check_lost() {
        Err(lost) => error(
            ErrorCode::DeviceLost,
            &format!("{lost} (the frame failed with: {e})"),
        ),
        Ok(()) => from_error(e),
    }
}

fn current_ctx() -> Result<Rc<Context>, JsValue> {
    CTX.with(|c| c.borrow().clone())
        .ok_or_else(|| error(ErrorCode::NoModel, "no model is loaded: call load() first"))
}

/// Why there is no session to run a frame on.
fn no_session() -> JsValue {
    if BUSY.with(|b| b.get()) {
        error(
            ErrorCode::Busy,
            "a frame is already running: await it first",
        )
    } else {
        error(ErrorCode::NoModel, "no model is loaded: call load() first")
    }
}

fn check_frame(session: &Session, pcm: &[f32]) -> Result<(), JsValue> {
    if pcm.len() != session.frame_size() {
        return Err(error(
            ErrorCode::Input,
            &format!(
                "a frame is {} samples at 24 kHz, got {}",
                session.frame_size(),
                pcm.len()
            ),
        ));
    }
    Ok(())
}

/// Await `f` with the session out of its slot, then put it back unless it was replaced or
/// disposed meanwhile.
async fn with_session_out<T>(
    mut session: Session,
    f: impl AsyncFnOnce(&mut Session) -> T,
) -> (T, f64) {
    let generation = GENERATION.with(|g| g.get());
    BUSY.with(|b| b.set(true));
    let t0 = js_sys::Date::now();
    let out = f(&mut session).await;
    let ms = js_sys::Date::now() - t0;
    BUSY.with(|b| b.set(false));
    if GENERATION.with(|g| g.get()) == generation {
        SESSION.with(|s| *s.borrow_mut() = Some(session));
    }
    (out, ms)
}

/// A frame's result as the JS object described at [`engine_step`].
fn output_object(out: StepOutput, gpu_ms: f64) -> JsValue {
    let o = js_sys::Object::new();
    let set = |k: &str, v: JsValue| {
        let _ = js_sys::Reflect::set(&o, &k.into(), &v);
    };
    set(
        "pcm",
        out.pcm
            .as_deref()
            .map_or(JsValue::NULL, |p| js_sys::Float32Array::from(p).into()),
    );
    set("text", out.text.into());
    set(
        "textToken",
        out.text_token.map_or(JsValue::NULL, |t| t.into()),
    );
    let codes = |a: Option<Vec<u32>>| {
        a.map_or(JsValue::NULL, |a| {
            let v: Vec<i32> = a.iter().map(|&x| x as i32).collect();
            js_sys::Int32Array::from(&v[..]).into()
        })
    };
    set("audioTokens", codes(out.audio_tokens));
    set("userTokens", codes(out.user_tokens));
    if let Some(h) = out.extra_heads.as_deref() {
        set("extraHeads", js_sys::Float32Array::from(h).into());
    }
    if let Some(p) = out.end_of_turn {
        set("endOfTurn", p.into());
    }
    set(
        "frame",
        out.frame.map_or(JsValue::NULL, |f| (f as f64).into()),
    );
    set("gpuMs", gpu_ms.into());
    o.into()
}

/// One frame: `pcm` is 1920 samples at 24 kHz. Resolves to `{ pcm: Float32Array | null, text,
/// textToken: number | null, audioTokens: Int32Array | null, userTokens: Int32Array | null,
/// frame: number | null, gpuMs }` (`userTokens`: the user's codes the LM heard, Moshi and STT);
/// an STT model adds `extraHeads: Float32Array` (`[heads × head_dim]` probabilities) and, with 3
/// or more heads, `endOfTurn: number` (head 2's first probability, the voice-activity value
/// Kyutai's scripts compare with 0.5).
#[wasm_bindgen(js_name = engineStep)]
pub async fn engine_step(pcm: Vec<f32>) -> Result<JsValue, JsValue> {
    let ctx = current_ctx()?;
    let Some(session) = SESSION.with(|s| s.borrow_mut().take()) else {
        return Err(no_session());
    };
    if let Err(e) = check_frame(&session, &pcm) {
        SESSION.with(|s| *s.borrow_mut() = Some(session));
        return Err(e);
    }
    let (out, gpu_ms) = with_session_out(session, async |s| s.step(&ctx, &pcm).await).await;
    let out = out.map_err(|e| frame_error(&ctx, e))?;
    Ok(output_object(out, gpu_ms))
}

/// Hibiki: one end-of-input frame (`card` in every codebook the model hears, as Kyutai's
/// `run_inference` gives once after the input ends); resolves to what [`engine_step`] resolves
/// to. Then feed silence until the text says EOS (token 2).
#[wasm_bindgen(js_name = engineStepEndOfInput)]
pub async fn engine_step_end_of_input() -> Result<JsValue, JsValue> {
    let ctx = current_ctx()?;
    let Some(session) = SESSION.with(|s| s.borrow_mut().take()) else {
        return Err(no_session());
    };
    let (out, gpu_ms) = with_session_out(session, async |s| {
        s.push_end_of_input(&ctx)?;
        s.pull(&ctx).await
    })
    .await;
    let out = out.map_err(|e| frame_error(&ctx, e))?;
    Ok(output_object(out, gpu_ms))
}

/// Record and submit one frame (1920 samples at 24 kHz) without waiting for it: at most
/// [`MAX_IN_FLIGHT`] frames may be pushed and not yet pulled (the one an [`engine_pull`] awaits
/// included). The conversation loop pushes each frame as it arrives, also while a pull awaits the
/// previous one's readback, so that the GPU works on it meanwhile.
#[wasm_bindgen(js_name = enginePush)]
pub fn engine_push(pcm: Vec<f32>) -> Result<(), JsValue> {
    let ctx = current_ctx()?;
    SESSION.with(|s| {
        let mut slot = s.borrow_mut();
        let session = slot.as_mut().ok_or_else(no_session)?;
        check_frame(session, &pcm)?;
        if session.in_flight() >= MAX_IN_FLIGHT {
            return Err(error(
                ErrorCode::Busy,
                &format!("{MAX_IN_FLIGHT} frames are already in flight: pull one first"),
            ));
        }
        session.push(&ctx, &pcm).map_err(|e| frame_error(&ctx, e))
    })
}

/// Await the oldest pushed frame; resolves to what [`engine_step`] resolves to (`gpuMs`: the time
/// this call awaited). The session stays in its slot during the wait ([`Session::wait_oldest`],
/// then [`Session::take`]), so a frame that arrives meanwhile can be pushed at once.
#[wasm_bindgen(js_name = enginePull)]
pub async fn engine_pull() -> Result<JsValue, JsValue> {
    let ctx = current_ctx()?;
    let wait = SESSION
        .with(|s| s.borrow_mut().as_mut().map(|s| s.wait_oldest()))
        .ok_or_else(no_session)?
        .map_err(|e| frame_error(&ctx, e))?;
    let generation = GENERATION.with(|g| g.get());
    let t0 = js_sys::Date::now();
    let bytes = wait.wait(&ctx).await;
    let gpu_ms = js_sys::Date::now() - t0;
    if GENERATION.with(|g| g.get()) != generation {
        return Err(error(
            ErrorCode::NoModel,
            "the model was replaced or disposed while this frame was read back",
        ));
    }
    let out = SESSION
        .with(|s| s.borrow_mut().as_mut().map(|s| s.take(&ctx, bytes)))
        .ok_or_else(no_session)?
        .map_err(|e| frame_error(&ctx, e))?;
    Ok(output_object(out, gpu_ms))
}

/// Timings of random-weight frames at a preset size, through the same [`Session`] frame loop as a
/// conversation (and as `parle bench mimi` / `parle bench lm`). `options` is JSON:
/// `{ preset: "mimi" | "lm-small" | "lm-7b" | "stt-1b" | "stt-2.6b" | "hibiki-1b" | "hibiki-2b" | "tiny" | "custom", frames,
/// quant: "q4" | "q8" | "bf16", config (custom: a config.json text), lm (custom: with the LM,
/// default true), forceF32, noSubgroups, profile }`. Replaces any loaded model. Resolves to JSON with `preset`, `description`,
/// `frames`, `meanMs`, `p50Ms`, `minMs`, `maxMs`, `rtf`, `gpuBytes`, `loadMs`, `dispatches`,
/// `adapter`, and with `profile: true` a `profile` ([`profile_json`]) of frames profiled after the
/// timed ones.
#[wasm_bindgen(js_name = engineBench)]
pub async fn engine_bench(options: String) -> Result<String, JsValue> {
    if BUSY.with(|b| b.get()) {
        return Err(error(ErrorCode::Busy, "a frame is still running"));
    }
    let opts: BenchOptions = parse(&options, "engineBench")?;
    let (preset_name, quant) = (opts.preset, opts.quant);
    let frames = opts.frames.clamp(1, 1000);
    drop_session();
    let ctx = super::context_with(opts.force_f32, opts.no_subgroups, opts.profile).await?;
    let format = quant_format(&quant).ok_or_else(|| {
        error(
            ErrorCode::Input,
            &format!("quant {quant}: expected q4, q8, q8_0, bf16 or f32"),
        )
    })?;
    let (custom, with_lm) = (opts.config, opts.lm);
    let preset =
        Preset::parse(&preset_name, custom, with_lm).map_err(|m| error(ErrorCode::Input, &m))?;
    let description = preset.description(&quant);
    let before = ctx.allocated_bytes();
    let t0 = js_sys::Date::now();
    let mut session = preset.load(&ctx, format).map_err(from_error)?;
    let gpu_bytes = ctx.allocated_bytes() - before;
    // The first frames compile pipelines: the load time is taken when the first comes back.
    BUSY.with(|b| b.set(true));
    let result = run_frames(
        &ctx,
        Workload::Session(&mut session),
        2,
        frames,
        1,
        &js_sys::Date::now,
    )
    .await;
    let profile = match (&result, opts.profile) {
        (Ok(_), true) => {
            Some(profile_frames(&ctx, Workload::Session(&mut session), PROFILE_FRAMES).await)
        }
        _ => None,
    };
    BUSY.with(|b| b.set(false));
    drop(session);
    let times = result.map_err(from_error)?;
    let profile = profile.transpose().map_err(from_error)?;
    let load_ms = times.first_ms - t0;
    let sorted = times.sorted();
    let n = sorted.len();
    Ok(json!({
        "preset": preset_name,
        "description": description,
        "frames": n,
        "meanMs": times.mean_ms,
        "p50Ms": sorted[n / 2],
        "minMs": sorted[0],
        "maxMs": sorted[n - 1],
        "rtf": times.mean_ms / 80.0,
        "gpuBytes": gpu_bytes,
        "loadMs": load_ms,
        "dispatches": times.dispatches,
        "adapter": ctx.caps().adapter_name,
        "software": ctx.caps().is_software,
        "profile": profile.as_ref().map(profile_json),
    })
    .to_string())
}

/// Frames [`engine_bench`] profiles after the timed ones.
const PROFILE_FRAMES: usize = 3;

/// A profile as JSON: `{ timed, adapterTimestamps, frames, timing (what was timed, in words),
/// spanMs, copy: { bytes, readGbps } | null, rows: [{ group, kernel (null: the group's total),
/// launches, bytesRead, ms, gbps, ofCopy }], table (the CLI's text table) }`; per frame, `ms`,
/// `gbps` and `ofCopy` null where untimed.
fn profile_json(r: &ProfileReport) -> serde_json::Value {
    let rows: Vec<_> = r
        .rows
        .iter()
        .map(|row| {
            json!({
                "group": row.group,
                "kernel": row.kernel,
                "launches": row.launches,
                "bytesRead": row.bytes_read,
                "ms": row.ms,
                "gbps": row.gbps(),
                "ofCopy": r.of_copy(row),
            })
        })
        .collect();
    json!({
        "timed": r.timed,
        "adapterTimestamps": r.adapter_timestamps,
        "frames": r.frames,
        "timing": r.timing_line(),
        "spanMs": r.span_ms,
        "copy": r.copy.map(|c| json!({ "bytes": c.bytes, "readGbps": c.read_gbps })),
        "rows": rows,
        "table": r.table(),
    })
}

/// Destroy the GPU device, as a driver reset or the browser's GPU process crash would (tests of
/// the page's recovery). The next frame fails with a `device-lost` error.
#[wasm_bindgen(js_name = engineLoseDevice)]
pub fn engine_lose_device() {
    if let Some(ctx) = CTX.with(|c| c.borrow().clone()) {
        ctx.destroy();
    }
}

/// GPU memory the engine holds now, in bytes (every buffer it allocated and has not freed), or 0
/// before the GPU is opened: the conversation's stats report it so that a long session can show
/// it stays flat.
#[wasm_bindgen(js_name = engineGpuBytes)]
pub fn engine_gpu_bytes() -> f64 {
    CTX.with(|c| {
        c.borrow()
            .as_ref()
            .map_or(0.0, |ctx| ctx.allocated_bytes() as f64)
    })
}

/// The words of a live STT stream (the `textToken` of every step since the last reset, in order)
/// with their times, by Kyutai's procedure ([`Session::live_words`]): JSON `{ words: [{ text,
/// start, end }], offsetSeconds, frameRate }` (seconds from the stream's first frame; a step's
/// time is step / frameRate − offsetSeconds). Fails with `input` when the loaded model is not STT
/// or has no tokenizer.
#[wasm_bindgen(js_name = engineWords)]
pub fn engine_words(tokens: Vec<u32>) -> Result<String, JsValue> {
    SESSION.with(|s| {
        let slot = s.borrow();
        let session = slot.as_ref().ok_or_else(no_session)?;
        let words = session.live_words(&tokens).ok_or_else(|| {
            error(
                ErrorCode::Input,
                "word timing needs a Kyutai STT model with its tokenizer: load one first",
            )
        })?;
        let words: Vec<_> = words
            .iter()
            .map(|w| json!({ "text": w.text, "start": w.start, "end": w.end }))
            .collect();
        Ok(json!({
            "words": words,
            "offsetSeconds": session.live_offset_seconds(),
            "frameRate": session.stt_plan().frame_rate,
        })
        .to_string())
    })
}
