//! The labels the LM gives its launches ([`crate::gpu::Recorder::set_group`]) for frame
//! profiles, one per field of [`StepDispatches`].

use super::StepDispatches;

/// The temporal input's embedding sum.
pub const EMBED: &str = "embedding";
/// The temporal transformer's layers.
pub const TEMPORAL: &str = "temporal";
/// The text head, the out norm when it is not fused, and the extra heads.
pub const TEXT_HEAD: &str = "text head";
/// Every depformer step but its sampling.
pub const DEPFORMER: &str = "depformer";
/// Token sampling, text and audio.
pub const SAMPLING: &str = "sampling";

impl StepDispatches {
    /// The counts with their profile group labels, in the order a step records them.
    pub fn by_group(&self) -> [(&'static str, u32); 5] {
        [
            (EMBED, self.embed),
            (TEMPORAL, self.temporal),
            (TEXT_HEAD, self.text_head),
            (DEPFORMER, self.depformer),
            (SAMPLING, self.sampling),
        ]
    }
}
