//! The instruction set the kernels run with, chosen at run time.
//!
//! Three paths: [`Isa::Avx512`] (AVX-512F/BW/VL with FMA), [`Isa::Avx2`] (AVX2 with FMA) and
//! [`Isa::Portable`] (whatever the build's baseline target allows: SSE2 on x86-64, NEON on
//! aarch64). By default the widest one the CPU has is taken ([`detected`]); the environment
//! variable [`ENV_VAR`] (`portable`, `avx2` or `avx512`) or [`set_isa`] chooses another, never
//! one the CPU lacks (an error names the available ones).
//!
//! How the kernels apply the choice:
//!
//! * The element-wise and reduction loops (ReLU, bias, the batch-norm passes, the epilogues,
//!   pooling, depthwise rows, Winograd's transforms) are compiled once per path ([`vectorized`]:
//!   the same Rust code inlined into a function with the path's target features) and the
//!   path is picked per call. No contraction into fused multiply-adds happens on any path
//!   (Rust does not contract), and the order of every sum is fixed, so these give the same
//!   bits on every path.
//! * The blocked direct convolution (`crate::blocked`) has a micro-kernel per path with
//!   fused multiply-adds (AVX-512, AVX2) or separate multiply and add (portable): results
//!   differ between paths by rounding only.
//! * The matrix products of the im2col and Winograd convolutions are the `gemm` crate's. It
//!   picks its own micro-kernels (AVX-512 with its `x86-v4` feature, else AVX2+FMA, else
//!   scalar) from `is_x86_feature_detected!` on first use and offers no way to force another:
//!   under `portable` or `avx2` they still run its widest kernels. This is said, not hidden:
//!   [`gemm_isa`] reports what gemm runs.

use crate::{Error, Result};
use std::sync::atomic::{AtomicU8, Ordering};

/// The environment variable that chooses the path: `portable`, `avx2` or `avx512`.
pub const ENV_VAR: &str = "CONVNETS_KERNELS_ISA";

/// A path of the kernels, from narrowest to widest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Isa {
    /// The build's baseline target features only.
    Portable,
    /// AVX2 with FMA (256-bit vectors).
    Avx2,
    /// AVX-512F/BW/VL with FMA (512-bit vectors).
    Avx512,
}

impl Isa {
    /// Every path, narrowest first.
    pub const ALL: [Isa; 3] = [Isa::Portable, Isa::Avx2, Isa::Avx512];

    /// The name [`ENV_VAR`] takes.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Portable => "portable",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
        }
    }

    /// Parses a name of [`ENV_VAR`] (case-insensitive; `avx512f`, `avx-512`, `fma` and
    /// `scalar` accepted too).
    pub fn parse(name: &str) -> Result<Isa> {
        match name.trim().to_ascii_lowercase().as_str() {
            "portable" | "scalar" | "generic" => Ok(Isa::Portable),
            "avx2" | "fma" | "avx2+fma" => Ok(Isa::Avx2),
            "avx512" | "avx512f" | "avx-512" => Ok(Isa::Avx512),
            _ => Err(Error::UnknownIsa(name.to_string())),
        }
    }

    /// f32 values per vector register: 16, 8, or 4 (the portable path's unit).
    pub fn f32_lanes(self) -> usize {
        match self {
            Isa::Avx512 => 16,
            Isa::Avx2 => 8,
            Isa::Portable => 4,
        }
    }

    /// Whether this CPU (and this build's target) can run the path.
    pub fn is_available(self) -> bool {
        self <= detected()
    }

    fn code(self) -> u8 {
        self as u8 + 1
    }

    fn from_code(code: u8) -> Option<Isa> {
        Isa::ALL.get(usize::from(code).checked_sub(1)?).copied()
    }
}

impl std::fmt::Display for Isa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The widest path this CPU runs.
pub fn detected() -> Isa {
    #[cfg(target_arch = "x86_64")]
    {
        let avx2 = std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma");
        let avx512 = avx2
            && std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512vl");
        if avx512 {
            Isa::Avx512
        } else if avx2 {
            Isa::Avx2
        } else {
            Isa::Portable
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        Isa::Portable
    }
}

/// The paths this CPU runs, narrowest first.
pub fn available() -> Vec<Isa> {
    Isa::ALL.into_iter().filter(|i| i.is_available()).collect()
}

/// 0: not chosen yet; otherwise `Isa::code`.
static CHOSEN: AtomicU8 = AtomicU8::new(0);

/// The path the kernels run: [`set_isa`]'s choice, else [`ENV_VAR`]'s, else [`detected`]. An
/// unusable value of the variable (unknown, or a path this CPU lacks) is reported once on
/// standard error and the detected path taken; [`isa_from_env`] gives the error itself.
pub fn isa() -> Isa {
    if let Some(isa) = Isa::from_code(CHOSEN.load(Ordering::Relaxed)) {
        return isa;
    }
    let isa = match isa_from_env() {
        Ok(Some(isa)) => isa,
        Ok(None) => detected(),
        Err(e) => {
            eprintln!("kernels: ignoring {ENV_VAR}: {e}; using {}", detected());
            detected()
        }
    };
    // Another thread may have chosen meanwhile: keep the first choice.
    match CHOSEN.compare_exchange(0, isa.code(), Ordering::Relaxed, Ordering::Relaxed) {
        Ok(_) => isa,
        Err(code) => Isa::from_code(code).unwrap_or(isa),
    }
}

/// The path [`ENV_VAR`] asks for, `None` when it is unset or empty; an error when it names no
/// path or one this CPU lacks.
pub fn isa_from_env() -> Result<Option<Isa>> {
    match std::env::var(ENV_VAR) {
        Ok(v) if !v.trim().is_empty() => checked(Isa::parse(&v)?).map(Some),
        Ok(_) | Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(v)) => Err(Error::UnknownIsa(v.to_string_lossy().into_owned())),
    }
}

/// `isa` if this CPU runs it.
fn checked(isa: Isa) -> Result<Isa> {
    if isa.is_available() {
        Ok(isa)
    } else {
        Err(Error::UnsupportedIsa {
            asked: isa.name().to_string(),
            available: available()
                .iter()
                .map(|i| i.name())
                .collect::<Vec<_>>()
                .join(", "),
        })
    }
}

/// Makes the kernels run `isa` from now on (all threads); returns the previous path. Errors
/// when this CPU lacks it. Results of the paths differ by rounding only where the module
/// docs say so.
pub fn set_isa(isa: Isa) -> Result<Isa> {
    let isa = checked(isa)?;
    let previous = crate::isa::isa();
    CHOSEN.store(isa.code(), Ordering::Relaxed);
    Ok(previous)
}

/// What the `gemm` crate's products run with: its own choice, whatever [`isa`] says (see the
/// module docs).
pub fn gemm_isa() -> Isa {
    detected()
}

/// Runs `f` compiled for the current path ([`isa`]): `f`'s loops are inlined into a function
/// with the path's target features, so the compiler vectorises them with its registers.
#[inline(always)]
pub fn vectorized<R>(f: impl FnOnce() -> R) -> R {
    vectorized_with(isa(), f)
}

/// [`vectorized`] for a given path (which must be available: [`isa`] only returns those;
/// otherwise the portable code runs).
#[inline(always)]
pub fn vectorized_with<R>(isa: Isa, f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        match isa {
            // SAFETY: the CPU has the features (`is_available`, checked here).
            Isa::Avx512 if isa.is_available() => unsafe { with_avx512(f) },
            // SAFETY: as above.
            Isa::Avx2 if isa.is_available() => unsafe { with_avx2(f) },
            _ => f(),
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = isa;
        f()
    }
}

/// Runs `f(index, chunk)` over the `len`-sized chunks of `out`, each compiled for the current
/// path ([`vectorized`]), on the rayon pool when `parallel`.
pub fn for_each_chunk<T: Send>(
    out: &mut [T],
    len: usize,
    parallel: bool,
    f: impl Fn(usize, &mut [T]) + Sync,
) {
    use rayon::prelude::*;
    if len == 0 || out.is_empty() {
        return;
    }
    let isa = isa();
    if parallel {
        out.par_chunks_mut(len)
            .enumerate()
            .for_each(|(i, c)| vectorized_with(isa, || f(i, c)));
    } else {
        out.chunks_mut(len)
            .enumerate()
            .for_each(|(i, c)| vectorized_with(isa, || f(i, c)));
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
unsafe fn with_avx512<R>(f: impl FnOnce() -> R) -> R {
    f()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn with_avx2<R>(f: impl FnOnce() -> R) -> R {
    f()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_errors() {
        for isa in Isa::ALL {
            assert_eq!(Isa::parse(isa.name()), Ok(isa));
            assert_eq!(Isa::parse(&isa.name().to_uppercase()), Ok(isa));
        }
        assert!(matches!(Isa::parse("sse9"), Err(Error::UnknownIsa(_))));
    }

    #[test]
    fn the_portable_path_is_always_available_and_choices_are_checked() {
        assert!(available().contains(&Isa::Portable));
        assert_eq!(available().last().copied(), Some(detected()));
        for isa in Isa::ALL {
            assert_eq!(checked(isa).is_ok(), isa <= detected());
        }
    }

    /// The chosen path is the environment's when it is set (CI runs the tests under each).
    #[test]
    fn the_environment_chooses_the_path() {
        if let Ok(Some(asked)) = isa_from_env() {
            assert_eq!(isa(), asked);
        }
    }
}
