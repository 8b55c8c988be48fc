//! The compute kernels of the farm examples, shared with the benchmarks' rayon baselines.

/// Counts how many of `n` pseudo-random points in the unit square fall inside the quarter circle.
/// Deterministic for a given `seed` (splitmix64), so every backend computes the same answer.
pub(crate) fn pi_hits(seed: u64, n: u64) -> u64 {
    let mut state = seed;
    let mut next = || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let mut hits = 0;
    for _ in 0..n {
        let x = (next() >> 11) as f64 / (1u64 << 53) as f64;
        let y = (next() >> 11) as f64 / (1u64 << 53) as f64;
        hits += (x * x + y * y <= 1.0) as u64;
    }
    hits
}

/// Escape-time shading (0 inside the set, brighter the longer a point takes to escape) of one row of the Mandelbrot set over
/// [-2.0, 1.0] x [-1.2, 1.2].
pub(crate) fn mandelbrot_row(row: u32, width: u32, height: u32, max_iter: u32) -> Vec<u8> {
    let ci = -1.2 + 2.4 * row as f64 / height.max(1) as f64;
    (0..width)
        .map(|col| {
            let cr = -2.0 + 3.0 * col as f64 / width.max(1) as f64;
            let (mut zr, mut zi, mut i) = (0.0f64, 0.0f64, 0);
            while i < max_iter && zr * zr + zi * zi <= 4.0 {
                let t = zr * zr - zi * zi + cr;
                zi = 2.0 * zr * zi + ci;
                zr = t;
                i += 1;
            }
            if i >= max_iter {
                0 // inside the set
            } else {
                // A square root spreads the few iterations most points escape after.
                (255.0 * (i as f64 / max_iter as f64).sqrt()) as u8
            }
        })
        .collect()
}
