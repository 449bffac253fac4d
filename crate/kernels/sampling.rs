//! Temperature / top-k / greedy sampling on the GPU (not written yet).
