//! The building blocks of timm's Inception-v4 and Inception-ResNet-v2, as data: a block is a
//! list of branches, a branch an optional 3x3 pool then a chain of timm's `ConvNormAct`
//! (convolution without bias `*.conv`, batch norm with `eps = 1e-3` `*.bn`, ReLU), each named
//! with its state-dict key, possibly ending in two parallel convolutions whose outputs are
//! concatenated (Inception-v4's `InceptionC`). The blocks' outputs are the concatenation of
//! their branches'; a residual block (Inception-ResNet's `Block35`, `Block17`, `Block8`) then
//! projects back to its input width with a 1x1 convolution with bias (`conv2d`), scales the
//! result, adds its input and applies ReLU (except the last `block8`).

use crate::common::BN_EPS;
use backbone::layers::{
    Activation, AvgPool2d, BatchNorm2d, BatchNormConfig, Conv2d, Conv2dConfig, ConvBlock, Layer, MaxPool2d,
    PoolConfig,
};
use backbone::Result;
use candle_core::Tensor;
use candle_nn::VarBuilder;

/// One `ConvNormAct` of a branch: its key under the block (`branch1.0`; empty for a layer that
/// is the whole unit, as Inception-v4's `features.0`), output channels, kernel (height,
/// width), stride, padding (height, width). Fresh weights have PyTorch's default
/// initialisation (timm's two models set none of their own).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Conv {
    pub key: &'static str,
    pub out: usize,
    pub kernel: (usize, usize),
    pub stride: usize,
    pub padding: (usize, usize),
}

/// A square `k`x`k` convolution named `key`.
pub(crate) const fn c(key: &'static str, out: usize, k: usize, stride: usize, padding: usize) -> Conv {
    Conv {
        key,
        out,
        kernel: (k, k),
        stride,
        padding: (padding, padding),
    }
}

/// A factorised `kh`x`kw` convolution (1x7, 7x1, 1x3, 3x1) with stride 1, "same" padding.
pub(crate) const fn r(key: &'static str, out: usize, kh: usize, kw: usize) -> Conv {
    Conv {
        key,
        out,
        kernel: (kh, kw),
        stride: 1,
        padding: (kh / 2, kw / 2),
    }
}

/// What a branch starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pool {
    /// Nothing: the first convolution takes the block's input.
    None,
    /// `nn.MaxPool2d(3, stride=2)` (floor mode), the whole branch when it has no convolution.
    Max,
    /// `nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)`: the border averages
    /// count only the input's values.
    Avg,
}

/// One branch of a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Branch {
    pub pool: Pool,
    /// The chain of convolutions, in order.
    pub convs: &'static [Conv],
    /// Parallel convolutions on the chain's output, concatenated (empty: none).
    pub split: &'static [Conv],
}

/// A chain of convolutions on the block's input.
pub(crate) const fn convs(convs: &'static [Conv]) -> Branch {
    Branch {
        pool: Pool::None,
        convs,
        split: &[],
    }
}

/// A 3x3 average pool (padding excluded) then `convs`.
pub(crate) const fn avg(convs: &'static [Conv]) -> Branch {
    Branch {
        pool: Pool::Avg,
        convs,
        split: &[],
    }
}

/// A 3x3 stride-2 max pool alone.
pub(crate) const MAX_POOL: Branch = Branch {
    pool: Pool::Max,
    convs: &[],
    split: &[],
};

/// A chain, then parallel convolutions on its output.
pub(crate) const fn split(convs: &'static [Conv], split: &'static [Conv]) -> Branch {
    Branch {
        pool: Pool::None,
        convs,
        split,
    }
}

/// One unit of a network's table.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Block {
    /// One `ConvNormAct` (its key is empty: the unit's own).
    Conv(Conv),
    /// `nn.MaxPool2d(3, stride=2)`.
    MaxPool,
    /// The concatenated branches.
    Mixed(&'static [Branch]),
    /// The concatenated branches, `conv2d` (1x1 with bias) back to the input's channels,
    /// `scale` times that plus the input, then ReLU when `relu`.
    Residual {
        branches: &'static [Branch],
        scale: f64,
        relu: bool,
    },
}

/// A variable builder under `key` (the builder itself for an empty key).
fn at<'a>(vb: &VarBuilder<'a>, key: &str) -> VarBuilder<'a> {
    if key.is_empty() {
        vb.clone()
    } else {
        vb.pp(key)
    }
}

/// timm's `ConvNormAct` with the models' `padding=0` default and `norm_eps=1e-3`.
fn conv_norm_act(spec: &Conv, in_channels: usize, vb: VarBuilder) -> Result<ConvBlock> {
    let config = Conv2dConfig::new(in_channels, spec.out, 1)
        .kernel_hw(spec.kernel.0, spec.kernel.1)
        .stride(spec.stride)
        .padding_hw(spec.padding.0, spec.padding.1)
        .no_bias();
    let conv = Conv2d::new(config, vb.pp("conv"))?;
    let bn = BatchNorm2d::new(spec.out, BatchNormConfig::with_eps(BN_EPS), vb.pp("bn"))?;
    Ok(ConvBlock::new(conv, Some(bn), Some(Activation::Relu)))
}

fn max_pool(name: String) -> Result<MaxPool2d> {
    Ok(MaxPool2d::new(PoolConfig::new(3).stride(2))?.named(name))
}

/// The layers of one branch.
struct BranchLayers {
    max_pool: Option<MaxPool2d>,
    avg_pool: Option<AvgPool2d>,
    convs: Vec<ConvBlock>,
    split: Vec<ConvBlock>,
}

impl BranchLayers {
    fn new(spec: &Branch, in_channels: usize, index: usize, vb: &VarBuilder) -> Result<(Self, usize)> {
        let pool_name = format!("{}.pool{index}", vb.prefix());
        let (max_pool, avg_pool) = match spec.pool {
            Pool::None => (None, None),
            Pool::Max => (Some(max_pool(pool_name)?), None),
            Pool::Avg => {
                let config = PoolConfig::new(3).stride(1).padding(1).count_include_pad(false);
                (None, Some(AvgPool2d::new(config)?.named(pool_name)))
            }
        };
        let mut channels = in_channels;
        let mut convs = Vec::with_capacity(spec.convs.len());
        for conv in spec.convs {
            convs.push(conv_norm_act(conv, channels, at(vb, conv.key))?);
            channels = conv.out;
        }
        let mut split = Vec::with_capacity(spec.split.len());
        for conv in spec.split {
            split.push(conv_norm_act(conv, channels, at(vb, conv.key))?);
        }
        if !spec.split.is_empty() {
            channels = spec.split.iter().map(|c| c.out).sum();
        }
        let layers = Self {
            max_pool,
            avg_pool,
            convs,
            split,
        };
        Ok((layers, channels))
    }

    fn forward_t(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        let mut xs = match (&self.max_pool, &self.avg_pool) {
            (Some(pool), _) => pool.forward_t(xs, train)?,
            (_, Some(pool)) => pool.forward_t(xs, train)?,
            _ => xs.clone(),
        };
        for conv in &self.convs {
            xs = conv.forward_t(&xs, train)?;
        }
        if self.split.is_empty() {
            return Ok(xs);
        }
        let parts = self
            .split
            .iter()
            .map(|conv| conv.forward_t(&xs, train))
            .collect::<Result<Vec<_>>>()?;
        Ok(Tensor::cat(&parts, 1)?)
    }
}

/// Concatenated branches (timm's `Mixed*`, `Inception*`, `Reduction*` modules).
struct Mixed {
    branches: Vec<BranchLayers>,
}

impl Mixed {
    fn new(specs: &[Branch], in_channels: usize, vb: &VarBuilder) -> Result<(Self, usize)> {
        let mut branches = Vec::with_capacity(specs.len());
        let mut channels = 0;
        for (i, spec) in specs.iter().enumerate() {
            let (branch, out) = BranchLayers::new(spec, in_channels, i, vb)?;
            branches.push(branch);
            channels += out;
        }
        Ok((Self { branches }, channels))
    }
}

impl Layer for Mixed {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        let parts = self
            .branches
            .iter()
            .map(|b| b.forward_t(xs, train))
            .collect::<Result<Vec<_>>>()?;
        Ok(Tensor::cat(&parts, 1)?)
    }
}

/// Inception-ResNet's residual block: `act(conv2d(cat(branches)) * scale + x)`.
struct Residual {
    mixed: Mixed,
    conv2d: Conv2d,
    scale: f64,
    relu: bool,
}

impl Layer for Residual {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        let up = self.conv2d.forward_t(&self.mixed.forward_t(xs, train)?, train)?;
        let out = ((up * self.scale)? + xs)?;
        if self.relu {
            Activation::Relu.forward_t(&out, train)
        } else {
            Ok(out)
        }
    }
}

/// Builds `block` on `in_channels` channels with its variables under `vb` (`name`: the
/// unit's name in summaries, for a pool); returns the layer and its output channels.
pub(crate) fn build(
    block: &Block,
    in_channels: usize,
    name: &str,
    vb: VarBuilder,
) -> Result<(Box<dyn Layer>, usize)> {
    Ok(match block {
        Block::Conv(spec) => (Box::new(conv_norm_act(spec, in_channels, vb)?), spec.out),
        Block::MaxPool => (Box::new(max_pool(name.to_string())?), in_channels),
        Block::Mixed(branches) => {
            let (mixed, out) = Mixed::new(branches, in_channels, &vb)?;
            (Box::new(mixed), out)
        }
        Block::Residual {
            branches,
            scale,
            relu,
        } => {
            let (mixed, out) = Mixed::new(branches, in_channels, &vb)?;
            let conv2d = Conv2d::new(Conv2dConfig::new(out, in_channels, 1), vb.pp("conv2d"))?;
            let residual = Residual {
                mixed,
                conv2d,
                scale: *scale,
                relu: *relu,
            };
            (Box::new(residual), in_channels)
        }
    })
}

/// Runs `units` in order, keeping the outputs of the units whose indices are in `taps`.
pub(crate) fn run(
    units: &[Box<dyn Layer>],
    xs: &Tensor,
    train: bool,
    taps: &[usize],
    mut stages: Option<&mut Vec<Tensor>>,
) -> Result<Tensor> {
    let mut xs = xs.clone();
    for (i, unit) in units.iter().enumerate() {
        xs = unit.forward_t(&xs, train)?;
        if let Some(stages) = stages.as_deref_mut() {
            if taps.contains(&i) {
                stages.push(xs.clone());
            }
        }
    }
    Ok(xs)
}
