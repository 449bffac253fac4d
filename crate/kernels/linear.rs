//! Matrix × vector / small matrix × matrix for f32, bf16, Q8_0 and MLX affine q4/q8 weights (not written yet).
