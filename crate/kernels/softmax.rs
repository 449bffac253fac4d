//! Row softmax (not written yet).
