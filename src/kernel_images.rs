//! The kernels as build.rs compiled them (machine code for each GPU generation from Volta, PTX
//! for the rest) and the choice of one of them for a GPU.

/// One kernel file's compiled images.
pub struct Images {
    /// Machine code (cubins) by the compute capability it was built for, oldest first.
    pub sass: &'static [((i32, i32), &'static [u8])],
    /// PTX ending in a NUL, which the driver compiles for any GPU at least as new as its target.
    pub ptx: &'static [u8],
}

// `MIN_COMPUTE_CAPABILITY` and one `Images` per kernels/*.cu, named after the file (RESAMPLE);
// empty images when the build had no NVRTC.
include!(concat!(env!("OUT_DIR"), "/kernel_images.rs"));

/// The image a GPU loads, and what it is (for error messages).
#[derive(Debug, PartialEq)]
pub struct Image {
    pub code: &'static [u8],
    pub name: String,
}

impl Images {
    /// What a GPU of `capability` loads: the machine code of the newest generation it runs
    /// (the same major version, a minor version not above its own), else the PTX, compiled by
    /// the driver; with `force_ptx` (CUDA_FORCE_PTX_JIT=1, which CUDA honours only inside
    /// fatbins) always the PTX. `None` when the build holds no kernels.
    pub fn pick(&self, capability: (i32, i32), force_ptx: bool) -> Option<Image> {
        let sass = self
            .sass
            .iter()
            .rev()
            .find(|((major, minor), _)| *major == capability.0 && *minor <= capability.1)
            .filter(|_| !force_ptx);
        match sass {
            Some(((major, minor), code)) => Some(Image {
                code,
                name: format!("sm_{major}{minor} machine code"),
            }),
            None if self.ptx.is_empty() => None,
            None => Some(Image {
                code: self.ptx,
                name: format!(
                    "compute_{}{} PTX, compiled by the driver",
                    MIN_COMPUTE_CAPABILITY.0, MIN_COMPUTE_CAPABILITY.1
                ),
            }),
        }
    }
}

/// Whether `CUDA_FORCE_PTX_JIT=1` asks for the PTX.
pub fn force_ptx() -> bool {
    std::env::var("CUDA_FORCE_PTX_JIT").is_ok_and(|v| v == "1")
}

#[cfg(test)]
mod tests {
    use super::Images;
    #[cfg(slipstream_kernels)]
    use super::{MIN_COMPUTE_CAPABILITY, RESAMPLE};

    const FAKE: Images = Images {
        sass: &[
            ((7, 0), b"70"),
            ((8, 0), b"80"),
            ((8, 6), b"86"),
            ((9, 0), b"90"),
        ],
        ptx: b"ptx\0",
    };

    fn picked(capability: (i32, i32), force_ptx: bool) -> &'static [u8] {
        FAKE.pick(capability, force_ptx).unwrap().code
    }

    #[test]
    fn each_gpu_gets_the_newest_machine_code_it_runs_else_ptx() {
        assert_eq!(picked((7, 0), false), b"70");
        assert_eq!(picked((7, 5), false), b"70");
        assert_eq!(picked((8, 0), false), b"80");
        assert_eq!(picked((8, 7), false), b"86");
        assert_eq!(picked((8, 9), false), b"86");
        assert_eq!(picked((9, 0), false), b"90");
        // No machine code of its major version: the driver compiles the PTX.
        assert_eq!(picked((10, 0), false), b"ptx\0");
        assert_eq!(picked((12, 1), false), b"ptx\0");
        for capability in [(7, 0), (8, 6), (9, 0)] {
            assert_eq!(picked(capability, true), b"ptx\0");
        }
        let named = FAKE.pick((8, 9), false).unwrap().name;
        assert_eq!(named, "sm_86 machine code");
        let empty = Images {
            sass: &[],
            ptx: &[],
        };
        assert_eq!(empty.pick((9, 0), false), None);
    }

    // `make test` always builds the kernels (SLIPSTREAM_REQUIRE_KERNELS=1).
    #[cfg(slipstream_kernels)]
    #[test]
    fn the_built_images_cover_every_generation_from_the_oldest_supported() {
        assert!(RESAMPLE.ptx.starts_with(b"//") && RESAMPLE.ptx.ends_with(b"\0"));
        assert!(RESAMPLE.ptx.windows(12).any(|w| w == b".version 8.0"));
        let oldest = RESAMPLE.sass.first().unwrap().0;
        assert_eq!(oldest, MIN_COMPUTE_CAPABILITY);
        for ((major, minor), cubin) in RESAMPLE.sass {
            assert!(
                cubin.starts_with(b"\x7fELF"),
                "sm_{major}{minor} is not a cubin"
            );
        }
        // Volta (V100), Turing (T4), Ampere (A100, A10), Ada (L4, L40S), Hopper, Blackwell.
        for generation in "70 75 80 86 89 90 100 120".split(' ') {
            let (major, minor) = generation.split_at(generation.len() - 1);
            let capability = (major.parse().unwrap(), minor.parse().unwrap());
            let image = RESAMPLE.pick(capability, false).unwrap();
            assert_eq!(image.name, format!("sm_{generation} machine code"));
        }
    }
}
