//! Mimi, the streaming speech codec: SEANet encoder/decoder, codec transformers, learned
//! resampling and the split RVQ, on the GPU kernels.

pub mod config;
mod model;
mod transformer;

pub use config::MimiConfig;
pub use model::Mimi;
