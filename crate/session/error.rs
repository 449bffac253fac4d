//! Misuse of a [`super::Session`]: calls in the wrong order or with the wrong input.

use crate::ErrorCode;

/// A session call that does not fit the session's state or shape.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SessionError {
    #[error("a frame has {want} samples, got {got}")]
    FrameSize { want: usize, got: usize },
    #[error("{max} frames are already in flight: pull one first")]
    TooManyInFlight { max: usize },
    #[error("no frame in flight: push one first")]
    NothingInFlight,
    #[error("the oldest frame's readback is already being awaited: await that pull first")]
    AlreadyWaiting,
    #[error("the frame was dropped by a reset (or another model) while its readback was awaited")]
    FrameDropped,
    #[error("this model is not a speech-to-text model (it has a depformer): use `parle run`")]
    NotStt,
    /// A setting out of range (a negative temperature, a top-k of 0), named.
    #[error("{0}")]
    Input(String),
}

impl SessionError {
    /// The kind of this error: a wrong frame or a pull with nothing pushed is bad input, a push
    /// past the in-flight bound a busy engine.
    pub fn code(&self) -> ErrorCode {
        match self {
            SessionError::FrameSize { .. }
            | SessionError::NothingInFlight
            | SessionError::FrameDropped
            | SessionError::NotStt
            | SessionError::Input(_) => ErrorCode::Input,
            SessionError::TooManyInFlight { .. } | SessionError::AlreadyWaiting => ErrorCode::Busy,
        }
    }
}
