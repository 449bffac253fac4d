//! RMSNorm and LayerNorm (not written yet).
