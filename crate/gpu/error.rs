use thiserror::Error;

/// Everything that can go wrong in the GPU layer, each with what to do about it.
#[derive(Debug, Error, Clone)]
pub enum GpuError {
    #[error("no GPU adapter found ({detail}). {hint}")]
    NoAdapter { detail: String, hint: String },
    #[error("the GPU adapter '{adapter}' is too small for parle: {what} is {have}, parle needs at least {need}. Use a GPU with larger limits.")]
    LimitsTooSmall {
        adapter: String,
        what: &'static str,
        have: u64,
        need: u64,
    },
    #[error("could not open the GPU device on '{adapter}': {message}")]
    RequestDevice { adapter: String, message: String },
    #[error("kernel '{kernel}' failed to compile or validate on this GPU: {message}")]
    Shader { kernel: String, message: String },
    #[error("GPU out of memory while allocating '{label}' ({bytes} bytes): close other GPU-heavy tabs or programs, or pick a smaller/quantized model")]
    OutOfMemory { label: String, bytes: u64 },
    #[error(
        "buffer '{label}' needs {bytes} bytes but this GPU binds at most {max} bytes per buffer"
    )]
    BufferTooLarge { label: String, bytes: u64, max: u64 },
    #[error("the GPU ran out of memory: {message}. Close other GPU-heavy tabs or programs, or pick a smaller/quantized model")]
    OutOfMemoryReported { message: String },
    #[error("the GPU device was lost ({reason}): reload the page or restart the program")]
    DeviceLost { reason: String },
    #[error("GPU validation error: {0}")]
    Validation(String),
    #[error("reading back from the GPU failed: {0}")]
    Readback(String),
    #[error("a frame recorded more than {capacity} kernel launches; raise the recorder's parameter capacity")]
    ParamArenaFull { capacity: u32 },
    #[error("invalid kernel launch '{kernel}': {message}")]
    Launch {
        kernel: &'static str,
        message: String,
    },
}

impl GpuError {
    /// The kind of this error, decided by the variant the GPU layer built from wgpu's own
    /// error types (never by the message).
    pub fn code(&self) -> crate::ErrorCode {
        use crate::ErrorCode;
        match self {
            GpuError::NoAdapter { .. } => ErrorCode::NoAdapter,
            GpuError::LimitsTooSmall { .. } | GpuError::BufferTooLarge { .. } => ErrorCode::Limits,
            GpuError::OutOfMemory { .. } | GpuError::OutOfMemoryReported { .. } => {
                ErrorCode::OutOfMemory
            }
            GpuError::DeviceLost { .. } => ErrorCode::DeviceLost,
            GpuError::RequestDevice { .. }
            | GpuError::Shader { .. }
            | GpuError::Validation(_)
            | GpuError::Readback(_)
            | GpuError::ParamArenaFull { .. }
            | GpuError::Launch { .. } => ErrorCode::Gpu,
        }
    }
}
