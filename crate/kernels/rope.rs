//! Interleaved rotary position embedding (not written yet).
