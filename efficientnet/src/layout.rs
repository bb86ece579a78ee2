//! The weights layouts: timm's names (this crate's) and torchvision's (`features.S.B.block.I.J`),
//! renamed into each other for EfficientNet-B0..B7 and EfficientNetV2-S.

use crate::v2::{BlockKind, EfficientNetV2Config};
use crate::EfficientNetConfig;
use candle_core::Tensor;
use std::collections::HashMap;

/// The naming scheme of an EfficientNet state dict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightsLayout {
    /// timm's `efficientnet_bN` / `efficientnetv2_*` (`conv_stem`, `blocks.S.I.conv_dw`,
    /// `classifier`): this crate's own names.
    Timm,
    /// torchvision's `efficientnet_bN` / `efficientnet_v2_s` (`features.0.0`,
    /// `features.S.B.block.I.J`, `classifier.1`).
    Torchvision,
}

/// torchvision's layout when some key starts with `features.`, timm's otherwise.
pub fn detect_layout<'a>(keys: impl IntoIterator<Item = &'a String>) -> WeightsLayout {
    if keys.into_iter().any(|k| k.starts_with("features.")) {
        WeightsLayout::Torchvision
    } else {
        WeightsLayout::Timm
    }
}

/// timm's and torchvision's names of an MBConv block's layers (with an expansion).
const MBCONV: &[(&str, &str)] = &[
    ("conv_pw", "0.0"),
    ("bn1", "0.1"),
    ("conv_dw", "1.0"),
    ("bn2", "1.1"),
    ("se.conv_reduce", "2.fc1"),
    ("se.conv_expand", "2.fc2"),
    ("conv_pwl", "3.0"),
    ("bn3", "3.1"),
];
/// Without expansion (EfficientNet's first stage).
const DEPTHWISE_SEPARABLE: &[(&str, &str)] = &[
    ("conv_dw", "0.0"),
    ("bn1", "0.1"),
    ("se.conv_reduce", "1.fc1"),
    ("se.conv_expand", "1.fc2"),
    ("conv_pw", "2.0"),
    ("bn2", "2.1"),
];
/// FusedMBConv with an expansion (timm's `EdgeResidual`).
const FUSED: &[(&str, &str)] = &[
    ("conv_exp", "0.0"),
    ("bn1", "0.1"),
    ("conv_pwl", "1.0"),
    ("bn2", "1.1"),
];
/// FusedMBConv without expansion (timm's `ConvBnAct`).
const CONV_BN_ACT: &[(&str, &str)] = &[("conv", "0.0"), ("bn1", "0.1")];

/// The module paths of both layouts for one network.
pub(crate) struct KeyMap {
    timm_to_tv: HashMap<String, String>,
    tv_to_timm: HashMap<String, String>,
}

impl KeyMap {
    /// From the layer names of each stage's blocks and the stages' depths.
    fn from_stages(stages: &[(&[(&str, &str)], usize)]) -> Self {
        let mut pairs: Vec<(String, String)> = vec![
            ("conv_stem".into(), "features.0.0".into()),
            ("bn1".into(), "features.0.1".into()),
        ];
        for (s, (modules, depth)) in stages.iter().enumerate() {
            for b in 0..*depth {
                for (timm, tv) in modules.iter() {
                    pairs.push((
                        format!("blocks.{s}.{b}.{timm}"),
                        format!("features.{}.{b}.block.{tv}", s + 1),
                    ));
                }
            }
        }
        let head = stages.len() + 1;
        pairs.push(("conv_head".into(), format!("features.{head}.0")));
        pairs.push(("bn2".into(), format!("features.{head}.1")));
        pairs.push(("classifier".into(), "classifier.1".into()));
        Self {
            tv_to_timm: pairs.iter().map(|(a, b)| (b.clone(), a.clone())).collect(),
            timm_to_tv: pairs.into_iter().collect(),
        }
    }

    pub(crate) fn new(config: &EfficientNetConfig) -> Self {
        let stages: Vec<(&[(&str, &str)], usize)> = config
            .stages()
            .iter()
            .map(|s| {
                let modules = if s.expand_ratio != 1 {
                    MBCONV
                } else {
                    DEPTHWISE_SEPARABLE
                };
                (modules, s.num_layers)
            })
            .collect();
        Self::from_stages(&stages)
    }

    pub(crate) fn v2(config: &EfficientNetV2Config) -> Self {
        let stages: Vec<(&[(&str, &str)], usize)> = config
            .stages()
            .iter()
            .map(|s| {
                let modules = match s.kind {
                    BlockKind::ConvBnAct => CONV_BN_ACT,
                    BlockKind::Fused => FUSED,
                    BlockKind::MBConv => MBCONV,
                };
                (modules, s.num_layers)
            })
            .collect();
        Self::from_stages(&stages)
    }

    fn rename(map: &HashMap<String, String>, key: &str) -> Option<String> {
        let (module, param) = key.rsplit_once('.')?;
        map.get(module).map(|m| format!("{m}.{param}"))
    }

    pub(crate) fn to_timm(&self, key: &str) -> Option<String> {
        Self::rename(&self.tv_to_timm, key)
    }

    pub(crate) fn to_torchvision(&self, key: &str) -> Option<String> {
        Self::rename(&self.timm_to_tv, key)
    }

    fn apply(&self, tensors: HashMap<String, Tensor>, to_timm: bool) -> HashMap<String, Tensor> {
        tensors
            .into_iter()
            .map(|(k, t)| {
                let renamed = if to_timm {
                    self.to_timm(&k)
                } else {
                    self.to_torchvision(&k)
                };
                (renamed.unwrap_or(k), t)
            })
            .collect()
    }
}

/// The torchvision name of a tensor this crate (timm) calls `key` in `config`'s network
/// (`blocks.2.0.conv_dw.weight` -> `features.3.0.block.1.0.weight`), if it has one: errors on a
/// torchvision file name the tensor as the file does.
pub fn torchvision_name(config: &EfficientNetConfig, key: &str) -> Option<String> {
    KeyMap::new(config).to_torchvision(key)
}

/// Renames a torchvision EfficientNet state dict to timm's names (this crate's):
/// `features.0.0` -> `conv_stem`, `features.S.B.block.I.J` -> `blocks.{S-1}.B.<layer>`,
/// `features.{last}.0` -> `conv_head`, `classifier.1` -> `classifier`. Keys that are not part
/// of `config`'s network are kept as they are (strict loading then reports them).
pub fn torchvision_to_timm(
    tensors: HashMap<String, Tensor>,
    config: &EfficientNetConfig,
) -> HashMap<String, Tensor> {
    KeyMap::new(config).apply(tensors, true)
}

/// Renames a timm EfficientNet state dict (this crate's names) to torchvision's, the inverse
/// of [`torchvision_to_timm`]. Keys that are not part of `config`'s network are kept.
pub fn timm_to_torchvision(
    tensors: HashMap<String, Tensor>,
    config: &EfficientNetConfig,
) -> HashMap<String, Tensor> {
    KeyMap::new(config).apply(tensors, false)
}

/// [`torchvision_name`] for EfficientNetV2 (`blocks.0.1.conv.weight` ->
/// `features.1.1.block.0.0.weight`, `blocks.1.0.conv_exp.weight` ->
/// `features.2.0.block.0.0.weight`).
pub fn v2_torchvision_name(config: &EfficientNetV2Config, key: &str) -> Option<String> {
    KeyMap::v2(config).to_torchvision(key)
}

/// [`torchvision_to_timm`] for EfficientNetV2: torchvision's `efficientnet_v2_s` to timm's
/// names (FusedMBConv without expansion: `block.0` -> `conv`/`bn1`; with: `block.0`, `block.1`
/// -> `conv_exp`/`bn1`, `conv_pwl`/`bn2`; MBConv as EfficientNet's).
pub fn v2_torchvision_to_timm(
    tensors: HashMap<String, Tensor>,
    config: &EfficientNetV2Config,
) -> HashMap<String, Tensor> {
    KeyMap::v2(config).apply(tensors, true)
}

/// The inverse of [`v2_torchvision_to_timm`].
pub fn v2_timm_to_torchvision(
    tensors: HashMap<String, Tensor>,
    config: &EfficientNetV2Config,
) -> HashMap<String, Tensor> {
    KeyMap::v2(config).apply(tensors, false)
}
