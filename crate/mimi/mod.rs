//! Mimi, the streaming speech codec: SEANet encoder/decoder, codec transformers, learned
//! resampling and the split RVQ, on the GPU kernels.

pub mod config;

pub use config::MimiConfig;
