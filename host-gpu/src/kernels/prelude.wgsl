// Prepended to every kernel of the GPU backend (see context.rs for the binding convention).
// Binding 0 holds the parameter words of the dispatch; f32 parameters are bit-cast.
@group(0) @binding(0) var<storage, read> P: array<u32>;

fn pu(i: u32) -> u32 { return P[i]; }
fn pf(i: u32) -> f32 { return bitcast<f32>(P[i]); }

// Flat invocation index of a 1-D element kernel dispatched with `groups_1d` (WG = 256).
fn flat_index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * 256u;
}
