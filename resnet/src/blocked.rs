//! ResNet's inference pass on the blocked layout ([`backbone::blocked`]): the stem, the max
//! pool and every block's convolutions (batch norms folded, the residual add and ReLU in the
//! last convolution of each branch) from the input to `layer4`'s output, prepared once inside
//! `backbone::with_frozen_weights`.

use crate::{Block, ResNet};
use backbone::blocked::{self, Blocked, BlockedConv, BufferPool};
use backbone::Result;
use candle_core::Tensor;

/// One residual block: its branch's convolutions (the last with the residual add and ReLU)
/// and its projection shortcut.
struct BlockPlan {
    branch: Vec<BlockedConv>,
    downsample: Option<BlockedConv>,
}

/// A ResNet prepared for the blocked layout.
pub(crate) struct BlockedResNet {
    stem: BlockedConv,
    /// The ImageNet stem's 3x3 stride-2 max pool (padding 1).
    maxpool: bool,
    blocks: Vec<BlockPlan>,
    /// The activations' buffers, recycled between layers and passes.
    pool: BufferPool,
}

impl BlockedResNet {
    /// `model` prepared, or `None` where a layer has no blocked kernel (squeeze-and-excitation,
    /// grouped convolutions: SE-ResNet, ResNeXt) or its weights are not `f32` on the CPU.
    pub(crate) fn new(model: &ResNet) -> Result<Option<Self>> {
        let Some(stem) = blocked::prepare_conv(&model.stem, false)? else {
            return Ok(None);
        };
        let mut blocks = Vec::new();
        for block in model.stages.iter().flatten() {
            match Self::block(block)? {
                Some(plan) => blocks.push(plan),
                None => return Ok(None),
            }
        }
        Ok(Some(Self {
            stem,
            maxpool: model.maxpool.is_some(),
            blocks,
            pool: BufferPool::default(),
        }))
    }

    fn block(block: &Block) -> Result<Option<BlockPlan>> {
        if block.se.is_some() {
            return Ok(None);
        }
        let last = block.branch.len().saturating_sub(1);
        let mut branch = Vec::with_capacity(block.branch.len());
        for (i, cb) in block.branch.iter().enumerate() {
            match blocked::prepare_conv(cb, i == last)? {
                Some(conv) => branch.push(conv),
                None => return Ok(None),
            }
        }
        let downsample = match &block.downsample {
            Some(ds) => match blocked::prepare_conv(ds, false)? {
                Some(conv) => Some(conv),
                None => return Ok(None),
            },
            None => None,
        };
        Ok(Some(BlockPlan { branch, downsample }))
    }

    /// `layer4`'s output for `xs` (checked by the caller), on `xs`'s device.
    pub(crate) fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let pool = &self.pool;
        let input = blocked::to_blocked(xs, self.stem.block(), pool)?;
        let mut x = blocked::conv(&self.stem, &input, None, pool)?;
        pool.give(input);
        if self.maxpool {
            let pooled = blocked::max_pool(&x, 3, 2, 1, pool)?;
            pool.give(std::mem::replace(&mut x, pooled));
        }
        for block in &self.blocks {
            x = self.run_block(block, x)?;
        }
        let out = blocked::to_tensor(&x, xs.device());
        pool.give(x);
        out
    }

    /// `relu(branch(x) + shortcut(x))`; `x`'s buffer goes back to the pool.
    fn run_block(&self, block: &BlockPlan, x: Blocked) -> Result<Blocked> {
        let pool = &self.pool;
        let projected = match &block.downsample {
            Some(ds) => Some(blocked::conv(ds, &x, None, pool)?),
            None => None,
        };
        let Some((last, rest)) = block.branch.split_last() else {
            return Ok(projected.unwrap_or(x));
        };
        let mut out: Option<Blocked> = None;
        for conv in rest {
            let next = blocked::conv(conv, out.as_ref().unwrap_or(&x), None, pool)?;
            if let Some(done) = out.replace(next) {
                pool.give(done);
            }
        }
        let result = blocked::conv(
            last,
            out.as_ref().unwrap_or(&x),
            Some(projected.as_ref().unwrap_or(&x)),
            pool,
        )?;
        for done in [out, projected].into_iter().flatten() {
            pool.give(done);
        }
        pool.give(x);
        Ok(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ResNetConfig;
    use backbone::Backbone;
    use candle_core::{DType, Device};
    use candle_nn::{VarBuilder, VarMap};

    fn model(config: &ResNetConfig) -> ResNet {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        ResNet::new(config, vb).unwrap()
    }

    /// The plan against the layers one by one (eval mode, outside inference mode: never
    /// blocked) for ResNet-18 (basic blocks) and ResNet-50 (bottlenecks), within rounding;
    /// inside `with_frozen_weights` the model runs the plan (the same bits) when the blocked
    /// path is on. SE-ResNet and ResNeXt have no plan.
    #[test]
    fn the_blocked_plan_matches_the_layers() {
        for config in [ResNetConfig::resnet18(), ResNetConfig::resnet50()] {
            let model = model(&config);
            // 24x28 maps in layer1: 84 tiles of 4x4, on Winograd F(4x4) there.
            let xs = Tensor::randn(0f32, 1.0, (2, 3, 96, 112), &Device::Cpu).unwrap();
            let plan = BlockedResNet::new(&model).unwrap().expect("a plan");
            let ours = plan.forward(&xs).unwrap();
            let theirs = model.forward_features(&xs, false).unwrap();
            assert_eq!(ours.dims(), theirs.dims());
            let max_abs = |t: &Tensor| t.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            let (scale, diff) = (max_abs(&theirs), max_abs(&(&ours - &theirs).unwrap()));
            assert!(diff <= 1e-5 * scale, "{}: {diff} against {scale}", config.name());
            // Again: the recycled buffers give the same values.
            let again = plan.forward(&xs).unwrap();
            let values = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            assert_eq!(values(&again), values(&ours));
            if backbone::with_frozen_weights(backbone::blocked::enabled) {
                let frozen = backbone::with_frozen_weights(|| model.forward_features(&xs, false)).unwrap();
                assert_eq!(
                    frozen.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                    ours.flatten_all().unwrap().to_vec1::<f32>().unwrap()
                );
            }
        }
        for config in [ResNetConfig::resnext50_32x4d(), ResNetConfig::seresnet50()] {
            assert!(
                BlockedResNet::new(&model(&config)).unwrap().is_none(),
                "{}",
                config.name()
            );
        }
    }
}
