//! Kernel test cases, one module per kernel family; each exports `CASES`.
pub mod attention;
pub mod conv;
pub mod elementwise;
pub mod embed;
pub mod fused;
pub mod fused_qkv;
pub mod linear;
pub mod mlp_split;
pub mod norm;
pub mod res_linear;
pub mod rope;
pub mod rvq;
pub mod sample_embed;
pub mod sampling;
pub mod softmax;

use crate::common::CaseFn;

/// Every family with its cases, in the order they run.
pub fn all() -> Vec<(&'static str, &'static [(&'static str, CaseFn)])> {
    vec![
        ("elementwise", elementwise::CASES),
        ("linear", linear::CASES),
        ("norm", norm::CASES),
        ("rope", rope::CASES),
        ("attention", attention::CASES),
        ("softmax", softmax::CASES),
        ("conv", conv::CASES),
        ("embed", embed::CASES),
        ("rvq", rvq::CASES),
        ("sampling", sampling::CASES),
        ("sample_embed", sample_embed::CASES),
        ("fused", fused::CASES),
        ("fused_qkv", fused_qkv::CASES),
        ("mlp_split", mlp_split::CASES),
        ("res_linear", res_linear::CASES),
    ]
}
