//! KV-cache append and causal attention over a ring KV cache (not written yet).
