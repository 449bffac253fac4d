//! The ConvTranspose1d launcher: picks `convtr_direct` or `convtr_cols` (see the module
//! documentation of [`super`]) and records one dispatch.

use bytemuck::{Pod, Zeroable};

use super::{
    check_views, launch_err, ConvAlgo, ConvOpts, ConvTr1dState, ConvWeights, AUTO_REDUCE_MAX_T,
    COLS, COLS_MAX_K, CONVTR_COLS, CONVTR_DIRECT, F_ELU_IN, F_FIRST, F_HAS_BIAS, F_Y_ROWS, WG,
    ZC_CAPACITY,
};
use crate::gpu::{GpuResult, Recorder, Variant, View};

crate::params_struct! {
    #[derive(Clone, Copy, Pod, Zeroable, Default, Debug)]
    pub(super) struct ConvTrParams {
        c_in: u32,
        c_out: u32,
        k: u32,
        stride: u32,
        cin_g: u32,
        cout_g: u32,
        t_in: u32,
        l_full: u32,
        emit: u32,
        pk: u32,
        flags: u32,
        co_per_wg: u32,
        n_cols: u32,
        n_out: u32,
        _pad: [u32; 2],
    }
}

/// Streaming causal ConvTranspose1d: `y [C_out, T·S]` from `x [C_in, T]`; updates the partial.
/// `weights.weight` is `[C_in, C_out/G, K]`, `weights.bias` `[C_out]`. `x` and the weights must
/// not share a buffer with `y`. `opts.accumulate` and `opts.input_rows` are not supported;
/// `opts.output_rows` writes `y` as `[T·S, C_out]` rows.
pub fn conv_tr1d(
    rec: &mut Recorder,
    state: &mut ConvTr1dState,
    weights: &ConvWeights,
    x: View,
    y: View,
    t: u32,
    opts: ConvOpts,
) -> GpuResult<()> {
    let ConvWeights { weight: w, bias } = *weights;
    let c = state.conv;
    let name = "conv_tr1d";
    if t == 0 {
        return Err(launch_err(name, "t must be positive".into()));
    }
    if opts.input_rows {
        return Err(launch_err(
            name,
            "a time-major input is not supported by the conv-transpose".into(),
        ));
    }
    if opts.accumulate {
        return Err(launch_err(
            name,
            "accumulate is not supported by the conv-transpose".into(),
        ));
    }
    let (cin_g, cout_g) = (c.c_in / c.groups, c.c_out / c.groups);
    let pk = c.partial_len();
    let emit = t * c.stride;
    let l_full = (t - 1) * c.stride + c.kernel;
    let sbytes = ConvTr1dState::buffer_bytes(&c);
    let (s_in, s_out) = state.pp.pair(sbytes);
    let mut reads = vec![
        ("x", x, c.c_in as u64 * t as u64),
        ("w", w, c.weight_len() as u64),
    ];
    if let Some(b) = bias {
        reads.push(("bias", b, c.c_out as u64));
    }
    check_views(
        name,
        &reads,
        &[
            ("y", y, c.c_out as u64 * emit as u64),
            ("partial", s_out, 0),
        ],
    )?;
    check_views(name, &[("partial", s_in, 0)], &[("y", y, 0)])?;

    let co_per_wg = (COLS / c.kernel).max(1);
    let n_cols = co_per_wg * c.kernel;
    let cols_fit = c.kernel <= COLS_MAX_K && t as u64 * n_cols as u64 <= ZC_CAPACITY as u64;
    let algo = match opts.algo {
        ConvAlgo::Auto if cols_fit && t <= AUTO_REDUCE_MAX_T => ConvAlgo::Reduce,
        ConvAlgo::Auto | ConvAlgo::Tiled => ConvAlgo::Direct,
        ConvAlgo::Reduce if !cols_fit => {
            return Err(launch_err(
                name,
                format!(
                    "ConvAlgo::Reduce needs K ≤ {COLS_MAX_K} and T·{n_cols} ≤ {ZC_CAPACITY} (K = {}, T = {t})",
                    c.kernel
                ),
            ))
        }
        a => a,
    };
    let n_out = c.c_out as u64 * l_full as u64;
    if n_out > u32::MAX as u64 {
        return Err(launch_err(name, format!("too many outputs ({n_out})")));
    }
    let mut flags = 0;
    if bias.is_some() {
        flags |= F_HAS_BIAS;
    }
    if state.pp.first {
        flags |= F_FIRST;
    }
    if opts.elu_input {
        flags |= F_ELU_IN;
    }
    if opts.output_rows {
        flags |= F_Y_ROWS;
    }
    let p = ConvTrParams {
        c_in: c.c_in,
        c_out: c.c_out,
        k: c.kernel,
        stride: c.stride,
        cin_g,
        cout_g,
        t_in: t,
        l_full,
        emit,
        pk,
        flags,
        co_per_wg,
        n_cols,
        n_out: n_out as u32,
        _pad: [0; 2],
    };
    let (kernel, groups) = match algo {
        ConvAlgo::Reduce => (&CONVTR_COLS, c.c_out.div_ceil(co_per_wg)),
        _ => (&CONVTR_DIRECT, (n_out as u32).div_ceil(WG)),
    };
    let grid = crate::kernels::grid_1d(groups, rec.ctx().caps().max_workgroups_per_dimension);
    rec.launch(
        kernel,
        &Variant::none(),
        &[x, s_in, w, bias.unwrap_or(w), y, s_out],
        &p,
        grid,
    )?;
    state.pp.advance();
    Ok(())
}
