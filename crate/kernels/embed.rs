//! Embedding gather and sum over streams (not written yet).
