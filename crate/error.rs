//! The crate's error type and the small, stable set of error kinds every error maps to.
//!
//! Each error is classified where the fault is detected (the GPU layer from wgpu's own error
//! types, the weights readers, the session), never from its message text. `crate::web` turns
//! an [`ErrorCode`] into the string code the page reads (`e.code`).

use crate::{gpu, session, text, weights};

/// What kind of failure an error is, so that a caller can pick its remedy without reading the
/// message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// The caller passed something invalid (a frame of the wrong size, an unknown option).
    Input,
    /// The engine is busy with another call (a frame is running, too many frames in flight).
    Busy,
    /// No model is loaded (or no frame is in flight) for a call that needs one.
    NoModel,
    /// A config file is unreadable or inconsistent.
    Config,
    /// A weights or tokenizer file is missing, truncated or does not match the model.
    Weights,
    /// The GPU ran out of memory.
    OutOfMemory,
    /// The GPU device was lost (driver reset, destroyed): reopen it.
    DeviceLost,
    /// The GPU's limits are too small for the model (buffer size, bindings).
    Limits,
    /// No usable GPU adapter.
    NoAdapter,
    /// Any other GPU failure (shader rejected, validation, readback).
    Gpu,
}

/// Any error of the engine, each naming its cause.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Gpu(#[from] gpu::GpuError),
    #[error(transparent)]
    Weights(#[from] weights::WeightsError),
    #[error(transparent)]
    Text(#[from] text::TextError),
    #[error(transparent)]
    Session(#[from] session::SessionError),
}

impl Error {
    /// The kind of this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::Gpu(e) => e.code(),
            Error::Weights(e) => e.code(),
            Error::Text(_) => ErrorCode::Weights,
            Error::Session(e) => e.code(),
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;
