//! torchvision's MobileNetV3 layout (`features.F.block.I.J`, `classifier.0`, `classifier.3`)
//! against timm's (this crate's names). The layout is recognised as MobileNetV2's is
//! ([`crate::detect_layout`]: some key starts with `features.`).
//!
//! torchvision numbers the modules over all stages: `features.0` is the stem, `features.F`
//! (from 1) the bottlenecks in order, each a `block` of `Conv2dNormActivation`s (`.0` conv,
//! `.1` batch norm) and, where the block has one, a `SqueezeExcitation` (`fc1`, `fc2`); the
//! last `features.F` is the 1x1 convolution. Its head is `classifier.0` (a linear layer
//! `[1280, 960]`, timm's `conv_head` `[1280, 960, 1, 1]`, reshaped on the way), hard-swish,
//! dropout and `classifier.3` (timm's `classifier`).

use crate::v3::V3Arch;
use backbone::{Error, Result};
use candle_core::Tensor;
use std::collections::HashMap;

/// The module paths of both layouts of one architecture.
struct KeyMap {
    timm_to_tv: HashMap<String, String>,
    tv_to_timm: HashMap<String, String>,
}

impl KeyMap {
    fn new(arch: &V3Arch) -> Self {
        let mut pairs: Vec<(String, String)> = vec![
            ("conv_stem".into(), "features.0.0".into()),
            ("bn1".into(), "features.0.1".into()),
        ];
        let mut f = 1;
        let mut prev = arch.stem;
        for (s, stage) in arch.stages.iter().enumerate() {
            for (b, bneck) in stage.iter().enumerate() {
                let block = format!("blocks.{s}.{b}");
                let mut modules: Vec<(&str, String)> = Vec::new();
                let mut i = 0;
                if bneck.expanded != prev {
                    modules.push(("conv_pw", format!("{i}.0")));
                    modules.push(("bn1", format!("{i}.1")));
                    i += 1;
                    modules.push(("conv_dw", format!("{i}.0")));
                    modules.push(("bn2", format!("{i}.1")));
                } else {
                    modules.push(("conv_dw", format!("{i}.0")));
                    modules.push(("bn1", format!("{i}.1")));
                }
                i += 1;
                if bneck.se {
                    modules.push(("se.conv_reduce", format!("{i}.fc1")));
                    modules.push(("se.conv_expand", format!("{i}.fc2")));
                    i += 1;
                }
                let (conv, bn) = if bneck.expanded != prev {
                    ("conv_pwl", "bn3")
                } else {
                    ("conv_pw", "bn2")
                };
                modules.push((conv, format!("{i}.0")));
                modules.push((bn, format!("{i}.1")));
                for (timm, tv) in modules {
                    pairs.push((format!("{block}.{timm}"), format!("features.{f}.block.{tv}")));
                }
                f += 1;
                prev = bneck.channels;
            }
        }
        let last = arch.stages.len();
        pairs.push((format!("blocks.{last}.0.conv"), format!("features.{f}.0")));
        pairs.push((format!("blocks.{last}.0.bn1"), format!("features.{f}.1")));
        pairs.push(("conv_head".into(), "classifier.0".into()));
        pairs.push(("classifier".into(), "classifier.3".into()));
        Self {
            tv_to_timm: pairs.iter().map(|(a, b)| (b.clone(), a.clone())).collect(),
            timm_to_tv: pairs.into_iter().collect(),
        }
    }

    fn rename(map: &HashMap<String, String>, key: &str) -> Option<String> {
        let (module, param) = key.rsplit_once('.')?;
        map.get(module).map(|m| format!("{m}.{param}"))
    }
}

/// The torchvision name of a tensor this crate (timm) calls `key` in architecture `arch`
/// (`blocks.2.0.se.conv_reduce.weight` -> `features.4.block.2.fc1.weight` in the large one),
/// if it has one.
pub fn torchvision_name(arch: &V3Arch, key: &str) -> Option<String> {
    KeyMap::rename(&KeyMap::new(arch).timm_to_tv, key)
}

/// The timm name of torchvision key `key` of architecture `arch`, if it is one of its.
pub fn torchvision_key_to_timm(arch: &V3Arch, key: &str) -> Option<String> {
    KeyMap::rename(&KeyMap::new(arch).tv_to_timm, key)
}

/// `t` with shape `dims`, or an error naming the tensor.
fn reshaped(key: &str, t: Tensor, dims: &[usize]) -> Result<Tensor> {
    t.reshape(dims).map_err(|e| {
        Error::config(format!(
            "mobilenetv3: tensor `{key}` of shape {:?} cannot take shape {dims:?}: {e}",
            t.dims()
        ))
    })
}

/// Renames a torchvision MobileNetV3 state dict of architecture `arch` to timm's names (this
/// crate's), the linear `classifier.0.weight` `[O, I]` reshaped to `conv_head.weight`
/// `[O, I, 1, 1]`. Keys that are not the architecture's are kept as they are (strict loading
/// then reports them); a head weight that is not 2-D is kept as it is (loading then names its
/// shape).
pub fn torchvision_to_timm(
    arch: &V3Arch,
    tensors: HashMap<String, Tensor>,
) -> Result<HashMap<String, Tensor>> {
    let map = KeyMap::new(arch);
    tensors
        .into_iter()
        .map(|(k, t)| match KeyMap::rename(&map.tv_to_timm, &k) {
            Some(name) if name == "conv_head.weight" && t.rank() == 2 => {
                let (o, i) = (t.dims()[0], t.dims()[1]);
                Ok((name, reshaped(&k, t, &[o, i, 1, 1])?))
            }
            Some(name) => Ok((name, t)),
            None => Ok((k, t)),
        })
        .collect()
}

/// Renames a timm MobileNetV3 state dict (this crate's names) to torchvision's, the inverse of
/// [`torchvision_to_timm`] (`conv_head.weight` `[O, I, 1, 1]` becomes `classifier.0.weight`
/// `[O, I]`). Keys that are not the architecture's are kept.
pub fn timm_to_torchvision(
    arch: &V3Arch,
    tensors: HashMap<String, Tensor>,
) -> Result<HashMap<String, Tensor>> {
    let map = KeyMap::new(arch);
    tensors
        .into_iter()
        .map(|(k, t)| match KeyMap::rename(&map.timm_to_tv, &k) {
            Some(name) if name == "classifier.0.weight" && t.rank() == 4 => {
                let (o, i) = (t.dims()[0], t.dims()[1]);
                Ok((name, reshaped(&k, t, &[o, i])?))
            }
            Some(name) => Ok((name, t)),
            None => Ok((k, t)),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v3::{MOBILENET_V3_LARGE, MOBILENET_V3_SMALL};

    #[test]
    fn key_maps_are_inverse() {
        for (arch, timm, tv) in [
            (MOBILENET_V3_LARGE, "conv_stem.weight", "features.0.0.weight"),
            (MOBILENET_V3_LARGE, "bn1.running_var", "features.0.1.running_var"),
            (
                MOBILENET_V3_LARGE,
                "blocks.0.0.conv_dw.weight",
                "features.1.block.0.0.weight",
            ),
            (
                MOBILENET_V3_LARGE,
                "blocks.0.0.bn2.bias",
                "features.1.block.1.1.bias",
            ),
            (
                MOBILENET_V3_LARGE,
                "blocks.1.0.conv_pw.weight",
                "features.2.block.0.0.weight",
            ),
            (
                MOBILENET_V3_LARGE,
                "blocks.1.1.conv_pwl.weight",
                "features.3.block.2.0.weight",
            ),
            (
                MOBILENET_V3_LARGE,
                "blocks.2.0.se.conv_reduce.weight",
                "features.4.block.2.fc1.weight",
            ),
            (
                MOBILENET_V3_LARGE,
                "blocks.2.2.bn3.weight",
                "features.6.block.3.1.weight",
            ),
            (
                MOBILENET_V3_LARGE,
                "blocks.5.2.se.conv_expand.bias",
                "features.15.block.2.fc2.bias",
            ),
            (
                MOBILENET_V3_LARGE,
                "blocks.6.0.conv.weight",
                "features.16.0.weight",
            ),
            (
                MOBILENET_V3_LARGE,
                "blocks.6.0.bn1.running_mean",
                "features.16.1.running_mean",
            ),
            (MOBILENET_V3_LARGE, "conv_head.bias", "classifier.0.bias"),
            (MOBILENET_V3_LARGE, "classifier.weight", "classifier.3.weight"),
            (
                MOBILENET_V3_SMALL,
                "blocks.0.0.conv_dw.weight",
                "features.1.block.0.0.weight",
            ),
            (
                MOBILENET_V3_SMALL,
                "blocks.0.0.se.conv_reduce.bias",
                "features.1.block.1.fc1.bias",
            ),
            (
                MOBILENET_V3_SMALL,
                "blocks.0.0.conv_pw.weight",
                "features.1.block.2.0.weight",
            ),
            (
                MOBILENET_V3_SMALL,
                "blocks.4.2.bn3.bias",
                "features.11.block.3.1.bias",
            ),
            (
                MOBILENET_V3_SMALL,
                "blocks.5.0.conv.weight",
                "features.12.0.weight",
            ),
        ] {
            assert_eq!(torchvision_name(&arch, timm).as_deref(), Some(tv), "{timm}");
            assert_eq!(torchvision_key_to_timm(&arch, tv).as_deref(), Some(timm), "{tv}");
        }
        assert_eq!(
            torchvision_key_to_timm(&MOBILENET_V3_LARGE, "features.17.0.weight"),
            None
        );
        assert_eq!(
            torchvision_key_to_timm(&MOBILENET_V3_SMALL, "features.16.0.weight"),
            None
        );
        assert_eq!(
            torchvision_key_to_timm(&MOBILENET_V3_LARGE, "classifier.1.weight"),
            None
        );
        assert_eq!(
            torchvision_name(&MOBILENET_V3_SMALL, "blocks.6.0.conv.weight"),
            None
        );
    }
}
