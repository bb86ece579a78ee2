//! The CPU kernels' side of a convolution's [`ConvGeometry`]: its construction from
//! [`ConvParams`], the live kernel taps, the plan of tiles.

use super::*;

impl ConvGeometry {
    pub(super) fn new(x: &[usize], weight: &[usize], p: ConvParams) -> Result<Self> {
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
            live: kh * kw,
        };
        g.live = g.live_taps().len();
        Ok(g)
    }

    /// The kernel taps `ky * kw + kx` that read the input at some output position. The
    /// others only ever multiply padding (all but the centre tap of a 3x3 convolution of a
    /// 1x1 map, ResNet's last stage on 32x32 images): they are left out of the column
    /// matrices, of the weight's rows and of the products, and their weight gradient is 0.
    pub(super) fn live_taps(&self) -> Vec<usize> {
        let (rows, cols) = self.spans();
        (0..self.kh * self.kw)
            .filter(|&t| {
                let (r, c) = (rows[t / self.kw], cols[t % self.kw]);
                r.lo < r.hi && c.lo < c.hi
            })
            .collect()
    }

    /// Whether every kernel tap is live (the weight is then used as it is).
    pub(super) fn all_live(&self) -> bool {
        self.live == self.kh * self.kw
    }

    /// Rows of a group's column matrix (the gemms' inner dimension): input channels times
    /// live taps.
    pub(super) fn k(&self) -> usize {
        self.cg() * self.live
    }

    pub(super) fn plane_in(&self) -> usize {
        self.h * self.w
    }

    pub(super) fn plane_out(&self) -> usize {
        self.oh * self.ow
    }

    pub(super) fn image_in(&self) -> usize {
        self.cin * self.plane_in()
    }

    pub(super) fn image_out(&self) -> usize {
        self.cout * self.plane_out()
    }

    /// A 1x1 convolution with stride 1 and no padding: the input planes are the columns.
    pub(super) fn pointwise(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.stride == 1 && self.padding == (0, 0)
    }

    /// Whether im2col / col2im work on planes split into column phases (see [`PlaneLayout`]):
    /// strided convolutions whose kernel has at least `stride^2` taps.
    pub(super) fn phased(&self) -> bool {
        self.stride > 1 && self.kh * self.kw >= self.stride * self.stride
    }

    /// Multiply-adds of one pass (forward, input or weight gradient).
    pub(super) fn work(&self) -> usize {
        self.n * self.image_out() * self.k()
    }

    /// How a pass spreads over the thread pool.
    pub(super) fn plan(&self) -> Plan {
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
pub(super) enum Plan {
    /// Everything on the calling thread.
    Serial,
    /// Runs of `per_thread` images in parallel, each run serial inside.
    Images { per_thread: usize },
    /// Images one after the other, each parallel inside over `threads` threads.
    Inside { threads: usize },
}

impl Plan {
    /// The parallelism of the work inside one image.
    pub(super) fn inner(self) -> Inner {
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
pub(super) struct Inner {
    pub(super) gemm: Parallelism,
    pub(super) rows: bool,
}
