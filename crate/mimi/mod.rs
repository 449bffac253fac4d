//! Mimi, the streaming speech codec: SEANet encoder/decoder, codec transformers, learned
//! resampling and the split RVQ, on the GPU kernels.

pub mod config;
#[cfg(not(target_arch = "wasm32"))]
mod model;
#[cfg(not(target_arch = "wasm32"))]
mod transformer;

pub use config::MimiConfig;
#[cfg(not(target_arch = "wasm32"))]
pub use model::Mimi;
