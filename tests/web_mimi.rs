//! Mimi in the browser: the wasm build on the browser's WebGPU encodes and decodes a golden
//! fixture frame by frame, with async readback only, and matches the PyPI reference.
#![cfg(target_arch = "wasm32")]

use parle::gpu::{Context, Options};
use parle::mimi::{Mimi, MimiConfig};
use parle::weights::{MemorySafetensors, TensorSource};
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

const CONFIG: &str = include_str!("fixtures/mimi/tiny_b/config.json");
const MODEL: &[u8] = include_bytes!("fixtures/mimi/tiny_b/model.safetensors");
const REFERENCE: &[u8] = include_bytes!("fixtures/mimi/tiny_b/reference.safetensors");

fn log(s: &str) {
    web_sys::console::log_1(&s.into());
}

#[wasm_bindgen_test]
async fn mimi_golden_in_browser() {
    let ctx = Context::new(&Options::default())
        .await
        .expect("no WebGPU adapter in this browser");
    log(&format!(
        "mimi in browser on '{}' ({})",
        ctx.caps().adapter_name,
        ctx.caps().backend
    ));
    let cfg = MimiConfig::from_json(CONFIG).unwrap();
    let model = MemorySafetensors::new("tiny_b/model.safetensors", MODEL.to_vec()).unwrap();
    let reference =
        MemorySafetensors::new("tiny_b/reference.safetensors", REFERENCE.to_vec()).unwrap();
    let mut mimi = Mimi::load(&ctx, cfg, &model, None).unwrap();
    let shape = |n: &str| reference.header.tensors[n].shape.clone();
    let audio = reference.f32("audio", &shape("audio")).unwrap();
    let decoded = reference.f32("decoded", &shape("decoded")).unwrap();
    let margins = reference
        .f32("code_margins", &shape("code_margins"))
        .unwrap();
    let cs = shape("codes");
    let (n_q, t) = (cs[1], cs[2]);
    let want: Vec<u32> = reference
        .bytes("codes", &cs)
        .unwrap()
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap()) as u32)
        .collect();
    let frame = mimi.frame_size();
    let mut mismatches = 0;
    for f in 0..t {
        let codes = mimi
            .encode_frame(&ctx, &audio[f * frame..(f + 1) * frame])
            .await
            .unwrap();
        if let Some(l) = (0..n_q).find(|&l| codes[l] != want[l * t + f]) {
            let m = margins[l * t + f];
            // Only provable near ties (the fixtures reject margins below 1e-5) are excused.
            assert!(
                m < 1e-5,
                "frame {f} level {l}: code {} != {} (margin {m:.2e})",
                codes[l],
                want[l * t + f]
            );
            mismatches += 1;
        }
    }
    let mut err = 0f32;
    for f in 0..t {
        let codes: Vec<u32> = (0..n_q).map(|l| want[l * t + f]).collect();
        let pcm = mimi.decode_frame(&ctx, &codes).await.unwrap();
        for (i, v) in pcm.iter().enumerate() {
            err = err.max((v - decoded[f * frame + i]).abs());
        }
    }
    log(&format!("mimi in browser: {t} frames × {n_q} codebooks, {mismatches} near-tie excuses (margin < 1e-5), decoded max |err| {err:.2e} (tolerance 1e-5)"));
    assert!(err <= 1e-5, "decoded max abs error {err:.3e}");
    ctx.check().unwrap();
}
