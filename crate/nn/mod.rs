//! Model blocks over the kernels, shared by Mimi and the LM: `Linear` (any weight format),
//! `Norm`, a streaming `Transformer` configured by enums, token `Embeddings`, streaming conv,
//! conv-transpose and residual blocks (`conv`), and where
//! weights come from (`Weights`: a checkpoint or random values made on the GPU).

pub mod conv;
pub mod embedding;
pub mod linear;
pub mod norm;
pub mod source;
pub mod transformer;

pub use embedding::{EmbeddingTable, Embeddings, TableExtras};
pub use linear::{Linear, WeightOptions};
pub use norm::{Norm, NormKind};
pub use source::{Scope, Weights};
pub use transformer::{Gating, LaneState, Positional, Transformer, TransformerConfig};
