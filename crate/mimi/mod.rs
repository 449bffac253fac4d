//! Mimi, the streaming speech codec: SEANet encoder/decoder, codec transformers, learned
//! resampling and the split RVQ, on the GPU kernels; each a [`Streaming`] part, and [`Mimi`]
//! their composition.

pub mod config;
mod model;
mod quantizer;
mod resample;
mod seanet;
mod streaming;
mod transformer;

pub use config::MimiConfig;
pub use model::Mimi;
pub use streaming::Streaming;
