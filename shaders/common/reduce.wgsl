// Workgroup-wide f32 sum and max shared by norm.wgsl and attention.wgsl
// (`//#include "common/reduce.wgsl"`). The includer declares WG (a power of two) and
// `var<workgroup> red: array<f32, WG>`; every invocation of the workgroup must make the call (it
// has barriers), and every invocation gets the result.
// With SUBGROUPS: subgroupAdd / subgroupMax, one partial per subgroup in red (subgroup k =
// invocations [k*size, (k+1)*size), any size 1..WG), then every subgroup reduces the partials.
// Without: a shared-memory tree over the WG slots of red.

//#if SUBGROUPS
fn wg_sum(v: f32, lid: u32, sid: u32, ssz: u32) -> f32 {
    let s = subgroupAdd(v);
    let nsg = (WG + ssz - 1u) / ssz;
    if (sid == 0u) {
        red[lid / ssz] = s;
    }
    workgroupBarrier();
    var t = 0.0;
    for (var k = 0u; k < nsg; k += ssz) {
        if (k + sid < nsg) {
            t += red[k + sid];
        }
    }
    let total = subgroupAdd(t);
    workgroupBarrier();
    return total;
}
fn wg_max(v: f32, lid: u32, sid: u32, ssz: u32) -> f32 {
    let s = subgroupMax(v);
    let nsg = (WG + ssz - 1u) / ssz;
    if (sid == 0u) {
        red[lid / ssz] = s;
    }
    workgroupBarrier();
    // This subgroup's own maximum is one of the partials, so it is a neutral start.
    var t = s;
    for (var k = 0u; k < nsg; k += ssz) {
        if (k + sid < nsg) {
            t = max(t, red[k + sid]);
        }
    }
    let total = subgroupMax(t);
    workgroupBarrier();
    return total;
}
//#else
fn wg_sum(v: f32, lid: u32) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    for (var k = WG / 2u; k > 0u; k >>= 1u) {
        if (lid < k) {
            red[lid] += red[lid + k];
        }
        workgroupBarrier();
    }
    let total = red[0];
    workgroupBarrier();
    return total;
}
fn wg_max(v: f32, lid: u32) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    for (var k = WG / 2u; k > 0u; k >>= 1u) {
        if (lid < k) {
            red[lid] = max(red[lid], red[lid + k]);
        }
        workgroupBarrier();
    }
    let total = red[0];
    workgroupBarrier();
    return total;
}
//#endif
