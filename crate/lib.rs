//! parle: Kyutai's Mimi codec and Moshi speech-to-speech LM on WebGPU.
//!
//! Layers (dependencies point down only): `web` (wasm exports) → `session` (one conversation,
//! the only frame loop) → `lm`, `mimi` (models) → `nn` (blocks) → `kernels` (launchers for the
//! WGSL kernels in `shaders/`) → `gpu` (device, buffers, pipelines, recorder, readback).
//! `weights` and `text` read files and know no GPU.

mod error;
pub mod gpu;
pub mod kernels;
pub mod lm;
pub mod mimi;
pub mod nn;
pub mod session;
pub mod text;
pub mod weights;

#[cfg(target_arch = "wasm32")]
pub mod web;

pub use error::{Error, ErrorCode, Result};
