use parle::gpu::Context;

use crate::cases;
use crate::common::{CaseResult, Size};

cases!();

#[allow(dead_code)]
async fn _unused(_ctx: &Context, _size: Size) -> CaseResult {
    Ok(())
}
