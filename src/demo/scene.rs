//! Procedural landscape photographs for the demo and the benchmarks.
//!
//! Each picture is a pure function of its seed: a sky with a sun or stars and clouds, two
//! ridges of hills fading into haze, ground or water with texture, trees, then sensor grain
//! and a vignette. The grain and texture matter: they give JPEGs the size and entropy of real
//! photographs (tens to ~100 KB at 500×375), so decode and I/O figures mean something.

use crate::rng::{Stream, key, mix64};

/// Scene classes; a sample's label is its class index.
pub const CLASSES: [&str; 8] = [
    "meadow",
    "mountains",
    "beach",
    "desert",
    "snowfield",
    "lake at sunset",
    "forest",
    "night",
];

type Rgb = [f32; 3];

struct Look {
    sky_top: Rgb,
    sky_horizon: Rgb,
    far: Rgb,
    near: Rgb,
    ground: Rgb,
    sun: Option<Rgb>,
    water: bool,
    trees: usize,
    stars: bool,
    clouds: f32,
    ridge: f32,
}

fn look(class: usize) -> Look {
    let base = Look {
        sky_top: [60.0, 110.0, 200.0],
        sky_horizon: [185.0, 210.0, 235.0],
        far: [95.0, 120.0, 140.0],
        near: [70.0, 110.0, 60.0],
        ground: [95.0, 150.0, 60.0],
        sun: Some([255.0, 245.0, 220.0]),
        water: false,
        trees: 6,
        stars: false,
        clouds: 0.6,
        ridge: 0.12,
    };
    match class {
        0 => base,
        1 => Look {
            far: [110.0, 115.0, 135.0],
            near: [85.0, 90.0, 80.0],
            ground: [105.0, 115.0, 80.0],
            trees: 2,
            ridge: 0.32,
            ..base
        },
        2 => Look {
            ground: [215.0, 195.0, 150.0],
            near: [200.0, 185.0, 140.0],
            water: true,
            trees: 0,
            ridge: 0.05,
            ..base
        },
        3 => Look {
            sky_top: [90.0, 140.0, 210.0],
            sky_horizon: [230.0, 215.0, 190.0],
            far: [190.0, 140.0, 100.0],
            near: [210.0, 160.0, 105.0],
            ground: [225.0, 180.0, 120.0],
            trees: 0,
            clouds: 0.15,
            ridge: 0.15,
            ..base
        },
        4 => Look {
            sky_top: [120.0, 150.0, 195.0],
            sky_horizon: [215.0, 225.0, 235.0],
            far: [200.0, 210.0, 225.0],
            near: [225.0, 230.0, 240.0],
            ground: [240.0, 243.0, 248.0],
            trees: 3,
            ridge: 0.25,
            ..base
        },
        5 => Look {
            sky_top: [70.0, 60.0, 120.0],
            sky_horizon: [250.0, 150.0, 80.0],
            far: [90.0, 60.0, 90.0],
            near: [50.0, 40.0, 60.0],
            ground: [60.0, 50.0, 60.0],
            sun: Some([255.0, 200.0, 120.0]),
            water: true,
            trees: 4,
            ridge: 0.1,
            ..base
        },
        6 => Look {
            far: [60.0, 90.0, 70.0],
            near: [35.0, 70.0, 40.0],
            ground: [50.0, 85.0, 40.0],
            trees: 40,
            clouds: 0.4,
            ridge: 0.18,
            ..base
        },
        _ => Look {
            sky_top: [5.0, 8.0, 25.0],
            sky_horizon: [30.0, 40.0, 75.0],
            far: [20.0, 25.0, 40.0],
            near: [12.0, 15.0, 25.0],
            ground: [15.0, 20.0, 25.0],
            sun: Some([235.0, 235.0, 220.0]),
            stars: true,
            trees: 5,
            clouds: 0.2,
            ..base
        },
    }
}

/// Value noise on an integer lattice, smoothly interpolated, in [0, 1).
fn noise(seed: u64, x: f32, y: f32) -> f32 {
    let (xi, yi) = (x.floor(), y.floor());
    let (fx, fy) = (x - xi, y - yi);
    let (sx, sy) = (fx * fx * (3.0 - 2.0 * fx), fy * fy * (3.0 - 2.0 * fy));
    let corner = |dx: i64, dy: i64| {
        let h = mix64(
            seed ^ ((xi as i64 + dx) as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
                ^ ((yi as i64 + dy) as u64).wrapping_mul(0xc2b2_ae3d_27d4_eb4f),
        );
        (h >> 40) as f32 / (1u64 << 24) as f32
    };
    let top = corner(0, 0) + (corner(1, 0) - corner(0, 0)) * sx;
    let bottom = corner(0, 1) + (corner(1, 1) - corner(0, 1)) * sx;
    top + (bottom - top) * sy
}

/// Fractal sum of `octaves` noise layers, in [0, 1).
fn fbm(seed: u64, x: f32, y: f32, octaves: u32) -> f32 {
    let (mut sum, mut amp, mut freq, mut norm) = (0.0, 0.5, 1.0, 0.0);
    for o in 0..octaves {
        sum += amp * noise(seed.wrapping_add(o as u64), x * freq, y * freq);
        norm += amp;
        amp *= 0.5;
        freq *= 2.03;
    }
    sum / norm
}

fn lerp(a: Rgb, b: Rgb, t: f32) -> Rgb {
    let t = t.clamp(0.0, 1.0);
    [
        a[0] + (b[0] - a[0]) * t,
        a[1] + (b[1] - a[1]) * t,
        a[2] + (b[2] - a[2]) * t,
    ]
}

fn scale(c: Rgb, s: f32) -> Rgb {
    [c[0] * s, c[1] * s, c[2] * s]
}

fn smoothstep(e0: f32, e1: f32, x: f32) -> f32 {
    let t = ((x - e0) / (e1 - e0)).clamp(0.0, 1.0);
    t * t * (3.0 - 2.0 * t)
}

/// Render scene `seed` at `width`×`height`: RGB bytes (row-major) and the class label.
pub fn render(seed: u64, width: usize, height: usize) -> (Vec<u8>, usize) {
    let mut rng = Stream::new(key(&[0x5ce9e, seed]));
    let class = rng.below(CLASSES.len() as u64) as usize;
    let look = look(class);
    let mut unit = || (rng.next_u64() >> 40) as f32 / (1u64 << 24) as f32;
    let horizon = 0.42 + 0.2 * unit();
    let sun_at = (0.15 + 0.7 * unit(), horizon * (0.25 + 0.6 * unit()));
    let sun_r = 0.03 + 0.03 * unit();
    let hue: Rgb = [0.9 + 0.2 * unit(), 0.9 + 0.2 * unit(), 0.9 + 0.2 * unit()];
    let s = seed.wrapping_mul(31);
    let (w, h) = (width as f32, height as f32);
    let aspect = w / h;

    // Ridge heights per column, computed once.
    let far: Vec<f32> = (0..width)
        .map(|x| horizon - look.ridge * fbm(s + 11, x as f32 / w * 3.0, 0.5, 5))
        .collect();
    let near: Vec<f32> = (0..width)
        .map(|x| horizon + 0.04 - 0.6 * look.ridge * fbm(s + 23, x as f32 / w * 5.0, 1.5, 5))
        .collect();

    let mut img = vec![[0f32; 3]; width * height];
    for y in 0..height {
        let v = y as f32 / h;
        for x in 0..width {
            let u = x as f32 / w;
            let sky = |v: f32| {
                let mut c = lerp(look.sky_top, look.sky_horizon, (v / horizon).powf(1.3));
                if let Some(sun) = look.sun {
                    let d = ((u - sun_at.0) * aspect).hypot(v - sun_at.1);
                    let glow = (-d / (3.0 * sun_r)).exp() * 0.6;
                    c = lerp(c, sun, if d < sun_r { 1.0 } else { glow });
                }
                let cloud = fbm(s + 5, u * 4.0 * aspect, v * 9.0, 5);
                let a = smoothstep(0.5, 0.75, cloud) * look.clouds * (1.2 - v / horizon);
                lerp(c, scale(look.sky_horizon, 1.08), a)
            };
            let mut c = if v < far[x] {
                let mut c = sky(v);
                if look.stars && noise(s + 7, u * w, v * h) > 0.995 {
                    c = [230.0, 230.0, 220.0];
                }
                c
            } else if v < near[x] {
                let rock = fbm(s + 37, x as f32 * 0.25, y as f32 * 0.25, 3);
                let shade = 0.6 + 0.4 * fbm(s + 13, u * 12.0, v * 12.0, 4) + 0.45 * rock;
                lerp(scale(look.far, shade), look.sky_horizon, 0.35)
            } else if look.water && v < horizon + 0.15 {
                // Water mirrors the sky, broken up by ripples.
                let ripple = fbm(s + 17, u * 6.0, v * 60.0, 3);
                let mirrored = sky((2.0 * horizon - v).max(0.0));
                lerp(scale(mirrored, 0.8), scale(look.sky_top, 0.7), ripple * 0.5)
            } else {
                let depth = (v - horizon) / (1.0 - horizon);
                // Coarse patches, and fine detail that gets finer towards the horizon.
                let fine = 0.45 / (depth + 0.25);
                let texture = 0.6 * fbm(s + 19, u * 30.0 * aspect, v * 50.0, 4)
                    + 0.9 * fbm(s + 31, x as f32 * fine, y as f32 * fine * 1.6, 3)
                    - 0.3;
                let base = if look.water {
                    look.ground
                } else {
                    lerp(look.near, look.ground, depth * 2.0)
                };
                scale(base, 0.75 + 0.5 * texture - 0.2 * depth)
            };
            c = [c[0] * hue[0], c[1] * hue[1], c[2] * hue[2]];
            img[y * width + x] = c;
        }
    }

    // Trees: a dark crown over a trunk, bigger nearer the bottom.
    for _ in 0..look.trees {
        let tx = unit() * w;
        let base_v = (near[(tx as usize).min(width - 1)] + 0.02 + 0.3 * unit()).min(0.98);
        let size = h * (0.05 + 0.25 * (base_v - horizon).max(0.02));
        let crown = lerp(look.near, [15.0, 40.0, 20.0], 0.6 + 0.3 * unit());
        let (cx, cy) = (tx, base_v * h - size);
        let y0 = (cy - size).max(0.0) as usize;
        let y1 = ((base_v * h) as usize).min(height);
        let x0 = (cx - size).max(0.0) as usize;
        let x1 = ((cx + size) as usize).min(width);
        for y in y0..y1 {
            for x in x0..x1 {
                let (dx, dy) = ((x as f32 - cx) / (0.55 * size), (y as f32 - cy) / size);
                let leaf = fbm(s + 29, x as f32 * 0.3, y as f32 * 0.3, 2);
                if dx * dx + dy * dy < 0.8 + 0.4 * leaf {
                    img[y * width + x] = scale(crown, 0.7 + 0.6 * leaf);
                } else if dx.abs() < 0.12 && y as f32 > cy {
                    img[y * width + x] = [60.0, 45.0, 30.0];
                }
            }
        }
    }

    // Sensor grain and vignette. The grain also sets how much the JPEGs weigh: at ±24 they
    // average ~92 KB, near ImageNet's photographs of these sizes and qualities; at ±12 they
    // averaged 65 KB, lighter work for every decoder than real data.
    let mut out = Vec::with_capacity(width * height * 3);
    for y in 0..height {
        for x in 0..width {
            let (u, v) = (x as f32 / w - 0.5, y as f32 / h - 0.5);
            let vignette = 1.0 - 0.35 * (u * u + v * v);
            let g = mix64(s ^ ((y * width + x) as u64).wrapping_mul(0x2545_f491_4f6c_dd1d));
            for (ch, value) in img[y * width + x].iter().enumerate() {
                let grain = (((g >> (16 * ch)) & 0xff) as f32 - 127.5) / 127.5 * 24.0;
                out.push((value * vignette + grain).clamp(0.0, 255.0) as u8);
            }
        }
    }
    (out, class)
}

/// ImageNet-like picture sizes (width, height).
pub const SIZES: [(usize, usize); 6] = [
    (500, 375),
    (375, 500),
    (500, 333),
    (500, 400),
    (400, 300),
    (333, 500),
];

/// Scene `seed` as a baseline 4:2:0 JPEG at an ImageNet-like size, quality 85-95 and weight
/// (~92 KB), with its label.
pub fn jpeg(seed: u64) -> (Vec<u8>, usize) {
    let mut rng = Stream::new(key(&[0x1e9, seed]));
    let (width, height) = SIZES[rng.below(SIZES.len() as u64) as usize];
    let quality = 85 + rng.below(11) as u8;
    let (rgb, label) = render(seed, width, height);
    let mut out = Vec::new();
    let mut encoder = jpeg_encoder::Encoder::new(&mut out, quality);
    encoder.set_sampling_factor(jpeg_encoder::SamplingFactor::F_2_2);
    encoder
        .encode(
            &rgb,
            width as u16,
            height as u16,
            jpeg_encoder::ColorType::Rgb,
        )
        .expect("encoding an in-memory RGB image cannot fail");
    (out, label)
}
