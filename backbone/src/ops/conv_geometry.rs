//! [`ConvGeometry`], the sizes of one 2-d convolution, shared by the CPU kernels of
//! [`super::conv_cpu`] (which add the live taps and the tiling plan, and build it from
//! [`super::ConvParams`]) and of [`super::depthwise`] (which builds it from its own
//! parameters: `groups == cin`, padding per axis); [`Span`], the output positions a kernel tap
//! reaches.

/// The sizes of one convolution: input `[n, cin, h, w]`, weight `[cout, cin / groups, kh, kw]`,
/// output `[n, cout, oh, ow]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ConvGeometry {
    pub(super) n: usize,
    pub(super) cin: usize,
    pub(super) h: usize,
    pub(super) w: usize,
    pub(super) cout: usize,
    pub(super) groups: usize,
    pub(super) kh: usize,
    pub(super) kw: usize,
    pub(super) oh: usize,
    pub(super) ow: usize,
    /// Zero padding (top/bottom, left/right).
    pub(super) padding: (usize, usize),
    pub(super) stride: usize,
    pub(super) dilation: usize,
    /// How many kernel taps are live (`conv_cpu`'s `ConvGeometry::live_taps`).
    pub(super) live: usize,
}

/// The output length of a convolution along one axis, `None` when the dilated kernel does
/// not fit the padded input (or the kernel or stride is 0).
pub(super) fn output_len(
    input: usize,
    kernel: usize,
    pad: usize,
    stride: usize,
    dilation: usize,
) -> Option<usize> {
    let span = kernel.checked_sub(1)?.checked_mul(dilation)?.checked_add(1)?;
    (input + 2 * pad)
        .checked_sub(span)?
        .checked_div(stride)
        .map(|v| v + 1)
}

impl ConvGeometry {
    /// Input channels per group.
    pub(super) fn cg(&self) -> usize {
        self.cin / self.groups
    }

    /// Output channels per group.
    pub(super) fn og(&self) -> usize {
        self.cout / self.groups
    }

    pub(super) fn input_dims(&self) -> [usize; 4] {
        [self.n, self.cin, self.h, self.w]
    }

    pub(super) fn weight_dims(&self) -> [usize; 4] {
        [self.cout, self.cg(), self.kh, self.kw]
    }

    pub(super) fn output_dims(&self) -> [usize; 4] {
        [self.n, self.cout, self.oh, self.ow]
    }

    /// Output rows reached by kernel row `ky` and the input row of output row 0.
    pub(super) fn rows(&self, ky: usize) -> Span {
        Span::new(
            self.oh,
            self.h,
            self.stride,
            (ky * self.dilation) as isize - self.padding.0 as isize,
        )
    }

    /// Output columns reached by kernel column `kx` and the input column of output column 0.
    pub(super) fn cols(&self, kx: usize) -> Span {
        Span::new(
            self.ow,
            self.w,
            self.stride,
            (kx * self.dilation) as isize - self.padding.1 as isize,
        )
    }

    /// The output spans of every kernel row and of every kernel column.
    pub(super) fn spans(&self) -> (Vec<Span>, Vec<Span>) {
        (
            (0..self.kh).map(|ky| self.rows(ky)).collect(),
            (0..self.kw).map(|kx| self.cols(kx)).collect(),
        )
    }
}

/// The output positions `o` in `[lo, hi)` whose input position `o * stride + offset` lies
/// inside the input (`lo == hi` when there are none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Span {
    pub(super) lo: usize,
    pub(super) hi: usize,
    pub(super) offset: isize,
}

impl Span {
    pub(super) fn new(output: usize, input: usize, stride: usize, offset: isize) -> Self {
        let s = stride as isize;
        // o >= ceil(-offset / s)
        let lo = if offset >= 0 { 0 } else { (-offset + s - 1) / s };
        // o <= floor((input - 1 - offset) / s)
        let last = input as isize - 1 - offset;
        let hi = if last < 0 { 0 } else { last / s + 1 };
        let lo = (lo as usize).min(output);
        let hi = (hi as usize).min(output).max(lo);
        Self { lo, hi, offset }
    }

    /// The input position of output position `o` (valid for `o` in `lo..hi`).
    #[inline(always)]
    pub(super) fn input(&self, o: usize, stride: usize) -> usize {
        (o as isize * stride as isize + self.offset) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::Span;

    #[test]
    fn spans_cover_exactly_the_input() {
        for input in 1..9 {
            for stride in 1..4 {
                for offset in -5isize..5 {
                    let output = 12;
                    let span = Span::new(output, input, stride, offset);
                    for o in 0..output {
                        let i = o as isize * stride as isize + offset;
                        let inside = (0..input as isize).contains(&i);
                        assert_eq!(
                            inside,
                            (span.lo..span.hi).contains(&o),
                            "{input} {stride} {offset} {o}"
                        );
                    }
                }
            }
        }
    }
}
