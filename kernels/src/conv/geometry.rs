//! [`ConvGeometry`], the sizes of one 2-d convolution, shared by the convolution kernels
//! (which add the live taps and the tiling plan, and build it from [`ConvParams`]) and by
//! [`crate::depthwise`] (which builds it from its own parameters: `groups == cin`, padding per
//! axis); [`Span`], the output positions a kernel tap reaches; [`Plan`], how a pass spreads
//! over the thread pool.

use super::*;

/// The sizes of one convolution: input `[n, cin, h, w]`, weight `[cout, cin / groups, kh, kw]`,
/// output `[n, cout, oh, ow]`; from [`ConvGeometry::new`] or [`crate::depthwise::geometry`],
/// which check that the sizes fit together (the kernels rely on it), read through its methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvGeometry {
    pub(crate) n: usize,
    pub(crate) cin: usize,
    pub(crate) h: usize,
    pub(crate) w: usize,
    pub(crate) cout: usize,
    pub(crate) groups: usize,
    pub(crate) kh: usize,
    pub(crate) kw: usize,
    pub(crate) oh: usize,
    pub(crate) ow: usize,
    /// Zero padding (top/bottom, left/right).
    pub(crate) padding: (usize, usize),
    pub(crate) stride: usize,
    pub(crate) dilation: usize,
    /// How many kernel taps are live (`conv_cpu`'s `ConvGeometry::live_taps`).
    pub(crate) live: usize,
}

/// The output length of a convolution along one axis, `None` when the dilated kernel does
/// not fit the padded input (or the kernel or stride is 0, or the padded input overflows).
pub fn output_len(input: usize, kernel: usize, pad: usize, stride: usize, dilation: usize) -> Option<usize> {
    let span = kernel.checked_sub(1)?.checked_mul(dilation)?.checked_add(1)?;
    pad.checked_mul(2)?
        .checked_add(input)?
        .checked_sub(span)?
        .checked_div(stride)
        .map(|v| v + 1)
}

/// Read access to the sizes.
impl ConvGeometry {
    /// Batch size.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Input channels.
    pub fn cin(&self) -> usize {
        self.cin
    }

    /// Input height.
    pub fn h(&self) -> usize {
        self.h
    }

    /// Input width.
    pub fn w(&self) -> usize {
        self.w
    }

    /// Output channels.
    pub fn cout(&self) -> usize {
        self.cout
    }

    /// Groups.
    pub fn groups(&self) -> usize {
        self.groups
    }

    /// Kernel height.
    pub fn kh(&self) -> usize {
        self.kh
    }

    /// Kernel width.
    pub fn kw(&self) -> usize {
        self.kw
    }

    /// Output height.
    pub fn oh(&self) -> usize {
        self.oh
    }

    /// Output width.
    pub fn ow(&self) -> usize {
        self.ow
    }

    /// Zero padding (top/bottom, left/right).
    pub fn padding(&self) -> (usize, usize) {
        self.padding
    }

    /// Stride.
    pub fn stride(&self) -> usize {
        self.stride
    }

    /// Dilation.
    pub fn dilation(&self) -> usize {
        self.dilation
    }

    /// Live kernel taps, [`ConvGeometry::live_taps`].
    pub fn live(&self) -> usize {
        self.live
    }

    /// Checks what the kernels rely on: positive sizes, groups dividing both channel counts,
    /// the output size `output_len` gives, padded sizes within `isize` and buffers (the
    /// input, weight, output and the column matrices of the whole batch) whose lengths a
    /// `usize` counts, within `isize::MAX`; `op` names the convolution in the error.
    pub(crate) fn validated(self, op: &str) -> Result<Self> {
        let positive = [
            self.cin,
            self.h,
            self.w,
            self.cout,
            self.groups,
            self.kh,
            self.kw,
            self.stride,
            self.dilation,
        ];
        if positive.contains(&0)
            || !self.cin.is_multiple_of(self.groups)
            || !self.cout.is_multiple_of(self.groups)
        {
            bail!("{op}: inconsistent geometry {self:?}: sizes must be positive and groups divide both channel counts")
        }
        let out = |len: usize, k: usize, pad: usize| output_len(len, k, pad, self.stride, self.dilation);
        if (
            out(self.h, self.kh, self.padding.0),
            out(self.w, self.kw, self.padding.1),
        ) != (Some(self.oh), Some(self.ow))
        {
            bail!("{op}: inconsistent geometry {self:?}: the output size is not the input's")
        }
        let product = |v: &[usize]| crate::checked_len(v).filter(|&p| p <= isize::MAX as usize);
        let padded = |len: usize, pad: usize| {
            pad.checked_mul(2)
                .and_then(|p| p.checked_add(len))
                .filter(|&p| p <= isize::MAX as usize)
        };
        // Per image, then the whole batch (whose size is 0 for an empty batch).
        let cg = self.cin / self.groups;
        let image = [
            product(&[self.cin, self.h, self.w]),
            product(&[self.cout, self.oh, self.ow]),
            product(&[self.cin, self.kh, self.kw, self.oh, self.ow]),
            product(&[self.cout, cg, self.kh, self.kw, self.oh, self.ow]),
        ];
        let batch = image.map(|v| v.and_then(|v| product(&[v, self.n])));
        let others = [
            product(&[self.cout, cg, self.kh, self.kw]),
            padded(self.h, self.padding.0),
            padded(self.w, self.padding.1),
        ];
        if image.contains(&None) || batch.contains(&None) || others.contains(&None) {
            bail!("{op}: the buffers of {self:?} have more elements than a usize counts")
        }
        Ok(self)
    }
}

impl ConvGeometry {
    /// Input channels per group.
    pub fn cg(&self) -> usize {
        self.cin / self.groups
    }

    /// Output channels per group.
    pub fn og(&self) -> usize {
        self.cout / self.groups
    }

    pub fn input_dims(&self) -> [usize; 4] {
        [self.n, self.cin, self.h, self.w]
    }

    pub fn weight_dims(&self) -> [usize; 4] {
        [self.cout, self.cg(), self.kh, self.kw]
    }

    pub fn output_dims(&self) -> [usize; 4] {
        [self.n, self.cout, self.oh, self.ow]
    }

    /// Output rows reached by kernel row `ky` and the input row of output row 0.
    pub(crate) fn rows(&self, ky: usize) -> Span {
        Span::new(
            self.oh,
            self.h,
            self.stride,
            (ky * self.dilation) as isize - self.padding.0 as isize,
        )
    }

    /// Output columns reached by kernel column `kx` and the input column of output column 0.
    pub(crate) fn cols(&self, kx: usize) -> Span {
        Span::new(
            self.ow,
            self.w,
            self.stride,
            (kx * self.dilation) as isize - self.padding.1 as isize,
        )
    }

    /// The output spans of every kernel row and of every kernel column.
    pub(crate) fn spans(&self) -> (Vec<Span>, Vec<Span>) {
        (
            (0..self.kh).map(|ky| self.rows(ky)).collect(),
            (0..self.kw).map(|kx| self.cols(kx)).collect(),
        )
    }
}

/// The output positions `o` in `[lo, hi)` whose input position `o * stride + offset` lies
/// inside the input (`lo == hi` when there are none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Span {
    pub(crate) lo: usize,
    pub(crate) hi: usize,
    pub(crate) offset: isize,
}

impl Span {
    /// For a positive `stride`.
    pub(crate) fn new(output: usize, input: usize, stride: usize, offset: isize) -> Self {
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
    pub(crate) fn input(&self, o: usize, stride: usize) -> usize {
        (o as isize * stride as isize + self.offset) as usize
    }
}

impl ConvGeometry {
    pub fn new(x: &[usize], weight: &[usize], p: ConvParams) -> Result<Self> {
        let [n, cin, h, w] = *x else {
            bail!("conv2d: expected a 4-d (N, C, H, W) input, got shape {x:?}")
        };
        let [cout, cg, kh, kw] = *weight else {
            bail!("conv2d: expected a 4-d (Cout, Cin/groups, kh, kw) weight, got shape {weight:?}")
        };
        if p.stride == 0 || p.dilation == 0 || p.groups == 0 {
            bail!("conv2d: stride, dilation and groups must be positive, got {p:?}")
        }
        if cin == 0 || cout == 0 || h == 0 || w == 0 || kh == 0 || kw == 0 {
            bail!("conv2d: channels, sizes and kernel must be positive: input {x:?}, weight {weight:?}")
        }
        if !cin.is_multiple_of(p.groups) || !cout.is_multiple_of(p.groups) || cg * p.groups != cin {
            bail!(
                "conv2d: a weight {weight:?} with {} groups does not fit an input of {cin} channels",
                p.groups
            )
        }
        let out = |len: usize, k: usize| output_len(len, k, p.padding, p.stride, p.dilation);
        let (Some(oh), Some(ow)) = (out(h, kh), out(w, kw)) else {
            bail!(
                "conv2d: input {h}x{w} is too small for a {kh}x{kw} kernel with padding {} and \
                 dilation {}",
                p.padding,
                p.dilation
            )
        };
        let mut g = Self {
            n,
            cin,
            h,
            w,
            cout,
            groups: p.groups,
            kh,
            kw,
            oh,
            ow,
            padding: (p.padding, p.padding),
            stride: p.stride,
            dilation: p.dilation,
            live: 0,
        }
        .validated("conv2d")?;
        g.live = g.live_taps().len();
        Ok(g)
    }

    /// The kernel taps `ky * kw + kx` that read the input at some output position. The
    /// others only ever multiply padding (all but the centre tap of a 3x3 convolution of a
    /// 1x1 map, ResNet's last stage on 32x32 images): they are left out of the column
    /// matrices, of the weight's rows and of the products, and their weight gradient is 0.
    pub fn live_taps(&self) -> Vec<usize> {
        let (rows, cols) = self.spans();
        (0..self.kh * self.kw)
            .filter(|&t| {
                let (r, c) = (rows[t / self.kw], cols[t % self.kw]);
                r.lo < r.hi && c.lo < c.hi
            })
            .collect()
    }

    /// Whether every kernel tap is live (the weight is then used as it is).
    pub fn all_live(&self) -> bool {
        self.live == self.kh * self.kw
    }

    /// Rows of a group's column matrix (the gemms' inner dimension): input channels times
    /// live taps.
    pub fn k(&self) -> usize {
        self.cg() * self.live
    }

    pub fn plane_in(&self) -> usize {
        self.h * self.w
    }

    pub fn plane_out(&self) -> usize {
        self.oh * self.ow
    }

    pub fn image_in(&self) -> usize {
        self.cin * self.plane_in()
    }

    pub fn image_out(&self) -> usize {
        self.cout * self.plane_out()
    }

    /// A 1x1 convolution with stride 1 and no padding: the input planes are the columns.
    pub fn pointwise(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.stride == 1 && self.padding == (0, 0)
    }

    /// Whether im2col / col2im work on planes split into column phases (see [`PlaneLayout`]):
    /// strided convolutions whose kernel has at least `stride^2` taps.
    pub fn phased(&self) -> bool {
        self.stride > 1 && self.kh * self.kw >= self.stride * self.stride
    }

    /// Multiply-adds of one pass (forward, input or weight gradient).
    pub fn work(&self) -> usize {
        self.n * self.image_out() * self.k()
    }

    /// How a pass spreads over the thread pool.
    pub fn plan(&self) -> Plan {
        let threads = rayon::current_num_threads();
        if threads <= 1 || self.work() < PARALLEL_THRESHOLD {
            Plan::Serial
        } else if self.n >= threads && (self.n.is_multiple_of(threads) || self.n >= 4 * threads) {
            Plan::Images {
                per_thread: self.n.div_ceil(threads),
            }
        } else {
            Plan::Inside { threads }
        }
    }
}

/// How a pass spreads over the thread pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Everything on the calling thread.
    Serial,
    /// Runs of `per_thread` images in parallel, each run serial inside.
    Images { per_thread: usize },
    /// Images one after the other, each parallel inside over `threads` threads.
    Inside { threads: usize },
}

impl Plan {
    /// The parallelism of the work inside one image.
    pub fn inner(self) -> Inner {
        match self {
            Plan::Serial | Plan::Images { .. } => Inner {
                gemm: Parallelism::None,
                rows: false,
            },
            Plan::Inside { threads } => Inner {
                gemm: Parallelism::Rayon(threads),
                rows: true,
            },
        }
    }
}

/// The parallelism inside one image: the gemm's, and whether the im2col / col2im rows are
/// spread over the pool.
#[derive(Debug, Clone, Copy)]
pub struct Inner {
    pub gemm: Parallelism,
    pub rows: bool,
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
