//! Streaming causal conv1d and conv-transpose1d (not written yet).
