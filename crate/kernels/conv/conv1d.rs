//! The Conv1d launcher: picks `conv1d_direct`, `conv1d_tiled` or `conv1d_rows` (see the module
//! documentation of [`super`]) and records one dispatch.

use bytemuck::{Pod, Zeroable};

use super::{
    check_views, direct_variant, launch_err, rows_variant, Conv1dState, ConvAlgo, ConvOpts,
    ConvWeights, PadMode, AUTO_REDUCE_MAX_T, AUTO_REDUCE_MIN_R, CONV1D_DIRECT, CONV1D_ROWS,
    CONV1D_TILED, DIRECT_CO_PER_WG, DIRECT_MIN_GROUPS, DIRECT_TILE_T, F_ACCUMULATE, F_ELU_IN,
    F_FIRST, F_HAS_BIAS, F_REPLICATE, F_X_ROWS, F_Y_ROWS, ROWS_PER_WG, ROWS_TILE_T, TILE_CO, WG,
};
use crate::gpu::{GpuResult, Recorder, Variant, View};

crate::params_struct! {
    #[derive(Clone, Copy, Pod, Zeroable, Default, Debug)]
    pub(super) struct Conv1dParams {
        c_in: u32,
        c_out: u32,
        k: u32,
        stride: u32,
        dilation: u32,
        cin_g: u32,
        cout_g: u32,
        pad: u32,
        t_in: u32,
        t_out: u32,
        flags: u32,
        main_groups: u32,
        tiles_t: u32,
        state_n: u32,
        _pad: [u32; 2],
    }
}

/// Streaming causal Conv1d: `y [C_out, T/S] = conv(cat(state, x))`, `x [C_in, T]`; updates the
/// state. `weights.weight` is `[C_out, C_in/G, K]`, `weights.bias` `[C_out]`. `t` must be a
/// positive multiple of the stride. `x` and the weights must not share a buffer with `y` (they
/// may share one another's).
pub fn conv1d(
    rec: &mut Recorder,
    state: &mut Conv1dState,
    weights: &ConvWeights,
    x: View,
    y: View,
    t: u32,
    opts: ConvOpts,
) -> GpuResult<()> {
    let ConvWeights { weight: w, bias } = *weights;
    let c = state.conv;
    let name = "conv1d";
    if t == 0 || !t.is_multiple_of(c.stride) {
        return Err(launch_err(
            name,
            format!(
                "t = {t} must be a positive multiple of the stride {}",
                c.stride
            ),
        ));
    }
    let t_out = t / c.stride;
    let pad = c.padding();
    let (cin_g, cout_g) = (c.c_in / c.groups, c.c_out / c.groups);
    let sbytes = Conv1dState::buffer_bytes(&c);
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
        &[("y", y, c.c_out as u64 * t_out as u64), ("state", s_out, 0)],
    )?;
    check_views(name, &[("state", s_in, 0)], &[("y", y, 0)])?;

    let tiled_ok = c.groups == 1 || cout_g % TILE_CO == 0;
    let r_len = cin_g * c.kernel;
    // CPU adapters (lavapipe, SwiftShader) run the shared-memory reduction slowly: there the
    // long-T convs go to the tiled kernel (lavapipe, Mimi's encoder: 5–19× faster).
    let long_reduce = r_len >= AUTO_REDUCE_MIN_R && !rec.ctx().caps().is_software;
    let algo = match opts.algo {
        ConvAlgo::Auto if t_out <= AUTO_REDUCE_MAX_T || long_reduce => ConvAlgo::Reduce,
        ConvAlgo::Auto | ConvAlgo::Tiled if tiled_ok => ConvAlgo::Tiled,
        ConvAlgo::Auto | ConvAlgo::Tiled => ConvAlgo::Direct,
        a => a,
    };
    let tiles_t = t_out.div_ceil(if algo == ConvAlgo::Reduce {
        ROWS_TILE_T
    } else {
        DIRECT_TILE_T
    });
    // 4 output channels per invocation reuse each input sample 4 times, but make 4 times fewer
    // workgroups: on a GPU, keep at least DIRECT_MIN_GROUPS of them.
    let cot: u32 = if cout_g % 4 == 0
        && (rec.ctx().caps().is_software || tiles_t * c.c_out.div_ceil(16) >= DIRECT_MIN_GROUPS)
    {
        4
    } else {
        1
    };
    // conv1d_rows reads the weights as vec4 when every row starts 16-byte aligned.
    let vec4 = r_len.is_multiple_of(4) && w.offset.is_multiple_of(16);
    let main_groups = match algo {
        ConvAlgo::Reduce => c.c_out.div_ceil(ROWS_PER_WG) * tiles_t,
        ConvAlgo::Tiled => tiles_t * c.c_out.div_ceil(TILE_CO),
        _ => tiles_t * c.c_out.div_ceil(DIRECT_CO_PER_WG * cot),
    };
    let state_n = c.c_in * pad;
    let groups = main_groups + state_n.div_ceil(WG);
    let mut flags = 0;
    if bias.is_some() {
        flags |= F_HAS_BIAS;
    }
    if state.pp.first {
        flags |= F_FIRST;
    }
    if c.pad_mode == PadMode::Replicate {
        flags |= F_REPLICATE;
    }
    if opts.elu_input {
        flags |= F_ELU_IN;
    }
    if opts.accumulate {
        flags |= F_ACCUMULATE;
    }
    if opts.input_rows {
        flags |= F_X_ROWS;
    }
    if opts.output_rows {
        flags |= F_Y_ROWS;
    }
    let p = Conv1dParams {
        c_in: c.c_in,
        c_out: c.c_out,
        k: c.kernel,
        stride: c.stride,
        dilation: c.dilation,
        cin_g,
        cout_g,
        pad,
        t_in: t,
        t_out,
        flags,
        main_groups,
        tiles_t,
        state_n,
        _pad: [0; 2],
    };
    let (kernel, variant, w) = match algo {
        ConvAlgo::Reduce if vec4 => (
            &CONV1D_ROWS,
            rows_variant(true),
            // Exactly the weights, so that the binding is a whole number of vec4s.
            View {
                size: c.weight_len() as u64 * 4,
                ..w
            },
        ),
        ConvAlgo::Reduce => (&CONV1D_ROWS, rows_variant(false), w),
        ConvAlgo::Tiled => (&CONV1D_TILED, Variant::none(), w),
        _ => (&CONV1D_DIRECT, direct_variant(cot), w),
    };
    let grid = crate::kernels::grid_1d(groups, rec.ctx().caps().max_workgroups_per_dimension);
    rec.launch(
        kernel,
        &variant,
        &[x, s_in, w, bias.unwrap_or(x), y, s_out],
        &p,
        grid,
    )?;
    state.pp.advance();
    Ok(())
}
