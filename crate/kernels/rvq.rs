//! RVQ nearest-codebook search (not written yet).
