// RoPE angle code shared by rope.wgsl and attention.wgsl (`//#include "common/rope.wgsl"`).

// (cos t, sin t) for any finite t: Cody-Waite reduction by pi/2 with a three-part constant,
// minimax polynomials on [-pi/4, pi/4].
fn cos_sin(t: f32) -> vec2<f32> {
    let k = round(t * 0.636619772367581343);
    var r = t - k * 1.5703125;
    r = r - k * 4.837512969970703125e-4;
    r = r - k * 7.54978995489188216e-8;
    let z = r * r;
    let s = r + r * z * (-1.6666654611e-1 + z * (8.3321608736e-3 + z * -1.9515295891e-4));
    let c = 1.0 - 0.5 * z + z * z * (4.166664568298827e-2 + z * (-1.388731625493765e-3 + z * 2.443315711809948e-5));
    let q = ((i32(k) % 4) + 4) % 4;
    if (q == 0) {
        return vec2<f32>(c, s);
    } else if (q == 1) {
        return vec2<f32>(-s, c);
    } else if (q == 2) {
        return vec2<f32>(-c, -s);
    }
    return vec2<f32>(s, -c);
}

// (x0, x1) rotated by the angle whose (cos, sin) is cs.
fn rotate(v: vec2<f32>, cs: vec2<f32>) -> vec2<f32> {
    return vec2<f32>(v.x * cs.x - v.y * cs.y, v.x * cs.y + v.y * cs.x);
}
