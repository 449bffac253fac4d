//! The Moshi LM: config (reference `config.json` keys), the model on the GPU (temporal
//! transformer, text head, depformer with per-step weights and token chaining), the delay
//! schedule of spec §3.1 through a token ring, and GPU sampling.

pub mod condition;
pub mod config;
mod extra;
mod model;

pub use config::LmConfig;
pub use extra::ExtraHeadsConfig;
pub use model::{Lm, LmOptions, Sampling, StepDispatches, TokenChoice};
