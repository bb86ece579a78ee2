//! The fused, in-place CPU passes of the optimizers ([`adam`], [`sgd`]) and what they share:
//! their element types, and running an in-place pass over a parameter-sized CPU buffer in the
//! buffer's dtype.

pub(crate) mod adam;
pub(crate) mod sgd;

use candle_core::{bail, CpuStorage, Layout, Result, WithDType};

/// The element types of the passes: `f32` and `f64`.
pub(crate) trait Elem: WithDType + num_traits::Float + std::ops::SubAssign + Send + Sync {}

impl Elem for f32 {}
impl Elem for f64 {}

/// A pass writing `dst` from its sources `a` and `b` (`b` empty for a one-source pass), all of
/// the same length.
pub(crate) trait InplacePass {
    fn run<T: Elem>(&self, dst: &mut [T], a: &[T], b: &[T]);
}

/// Runs `pass` on the first `l_dst.shape().elem_count()` elements of `dst` and of each source
/// (at most two), in `dst`'s dtype; other dtypes are an error naming the op `name`.
pub(crate) fn run_inplace<P: InplacePass>(
    pass: &P,
    name: &str,
    (dst, l_dst): (&mut CpuStorage, &Layout),
    sources: &[(&CpuStorage, &Layout)],
) -> Result<()> {
    fn run<P: InplacePass, T: Elem>(
        pass: &P,
        dst: &mut [T],
        sources: &[(&CpuStorage, &Layout)],
    ) -> Result<()> {
        let source = |i: usize| -> Result<&[T]> {
            match sources.get(i) {
                Some((s, l)) => Ok(&T::cpu_storage_as_slice(s)?[..l.shape().elem_count()]),
                None => Ok(&[]),
            }
        };
        pass.run(dst, source(0)?, source(1)?);
        Ok(())
    }
    let n = l_dst.shape().elem_count();
    match dst {
        CpuStorage::F32(d) => run(pass, &mut d[..n], sources),
        CpuStorage::F64(d) => run(pass, &mut d[..n], sources),
        _ => bail!("{name}: only f32 and f64 parameters"),
    }
}
