//! The two layouts of a RegNet state dict: timm's (this crate's names) and torchvision's,
//! renamed module by module. The mapping is structural (stage and block numbers carried over),
//! so it serves every RegNet design.

use backbone::Result;
use candle_core::Tensor;
use std::collections::HashMap;

/// The naming scheme of a RegNet state dict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightsLayout {
    /// timm's `regnetx_016` / `regnety_016` (`stem.conv`, `s1.b1.conv1.conv`, `head.fc`): this
    /// crate's own names.
    Timm,
    /// torchvision's `regnet_x_1_6gf` / `regnet_y_1_6gf` (`stem.0`,
    /// `trunk_output.block1.block1-0.f.a.0`, `fc`).
    Torchvision,
}

/// torchvision's layout when some key starts with `trunk_output.`, timm's otherwise.
pub fn detect_layout<'a>(keys: impl IntoIterator<Item = &'a String>) -> WeightsLayout {
    if keys.into_iter().any(|k| k.starts_with("trunk_output.")) {
        WeightsLayout::Torchvision
    } else {
        WeightsLayout::Timm
    }
}

/// The modules inside a block: timm's path, torchvision's path.
const BLOCK_MODULES: [(&str, &str); 10] = [
    ("conv1.conv", "f.a.0"),
    ("conv1.bn", "f.a.1"),
    ("conv2.conv", "f.b.0"),
    ("conv2.bn", "f.b.1"),
    ("se.fc1", "f.se.fc1"),
    ("se.fc2", "f.se.fc2"),
    ("conv3.conv", "f.c.0"),
    ("conv3.bn", "f.c.1"),
    ("downsample.conv", "proj.0"),
    ("downsample.bn", "proj.1"),
];

/// Modules outside the stages: timm's path, torchvision's path.
const OUTER_MODULES: [(&str, &str); 3] = [("stem.conv", "stem.0"), ("stem.bn", "stem.1"), ("head.fc", "fc")];

/// `(module, parameter)` of a key: everything before the last dot, and the last part.
fn split(key: &str) -> Option<(&str, &str)> {
    key.rsplit_once('.')
}

/// Stage and block numbers of timm's `s{S}.b{B}.` prefix (from 1), and the rest.
fn timm_block(module: &str) -> Option<(usize, usize, &str)> {
    let rest = module.strip_prefix('s')?;
    let (s, rest) = rest.split_once(".b")?;
    let (b, rest) = rest.split_once('.')?;
    Some((s.parse().ok()?, b.parse().ok()?, rest))
}

/// Stage and block numbers of torchvision's `trunk_output.block{S}.block{S}-{B}.` prefix (stage
/// from 1, block from 0), and the rest.
fn torchvision_block(module: &str) -> Option<(usize, usize, &str)> {
    let rest = module.strip_prefix("trunk_output.block")?;
    let (s, rest) = rest.split_once(".block")?;
    let (sb, rest) = rest.split_once('.')?;
    let (s2, b) = sb.split_once('-')?;
    if s2 != s {
        return None;
    }
    Some((s.parse().ok()?, b.parse().ok()?, rest))
}

/// The torchvision name of a tensor this crate (timm) calls `key`
/// (`s2.b1.conv2.conv.weight` -> `trunk_output.block2.block2-0.f.b.0.weight`), if it has one:
/// errors on a torchvision file name the tensor as the file does.
pub fn torchvision_name(key: &str) -> Option<String> {
    let (module, param) = split(key)?;
    if let Some((_, tv)) = OUTER_MODULES.iter().find(|(timm, _)| *timm == module) {
        return Some(format!("{tv}.{param}"));
    }
    let (s, b, rest) = timm_block(module)?;
    let (_, tv) = BLOCK_MODULES.iter().find(|(timm, _)| *timm == rest)?;
    (b >= 1).then(|| format!("trunk_output.block{s}.block{s}-{}.{tv}.{param}", b - 1))
}

/// The timm name of torchvision key `key` (`trunk_output.block1.block1-0.proj.1.running_var`
/// -> `s1.b1.downsample.bn.running_var`), if it is one of a RegNet's.
pub fn torchvision_key_to_timm(key: &str) -> Option<String> {
    let (module, param) = split(key)?;
    if let Some((timm, _)) = OUTER_MODULES.iter().find(|(_, tv)| *tv == module) {
        return Some(format!("{timm}.{param}"));
    }
    let (s, b, rest) = torchvision_block(module)?;
    let (timm, _) = BLOCK_MODULES.iter().find(|(_, tv)| *tv == rest)?;
    Some(format!("s{s}.b{}.{timm}.{param}", b + 1))
}

/// Renames a torchvision RegNet state dict to timm's names (this crate's). Keys that are not a
/// RegNet's are kept as they are (strict loading then reports them).
pub fn torchvision_to_timm(tensors: HashMap<String, Tensor>) -> Result<HashMap<String, Tensor>> {
    Ok(tensors
        .into_iter()
        .map(|(k, t)| (torchvision_key_to_timm(&k).unwrap_or(k), t))
        .collect())
}

/// Renames a timm RegNet state dict (this crate's names) to torchvision's, the inverse of
/// [`torchvision_to_timm`]. Keys that are not a RegNet's are kept.
pub fn timm_to_torchvision(tensors: HashMap<String, Tensor>) -> Result<HashMap<String, Tensor>> {
    Ok(tensors
        .into_iter()
        .map(|(k, t)| (torchvision_name(&k).unwrap_or(k), t))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_maps_are_inverse() {
        for (timm, tv) in [
            ("stem.conv.weight", "stem.0.weight"),
            ("stem.bn.running_mean", "stem.1.running_mean"),
            (
                "s1.b1.conv1.conv.weight",
                "trunk_output.block1.block1-0.f.a.0.weight",
            ),
            ("s1.b1.conv1.bn.bias", "trunk_output.block1.block1-0.f.a.1.bias"),
            (
                "s2.b3.conv2.conv.weight",
                "trunk_output.block2.block2-2.f.b.0.weight",
            ),
            (
                "s3.b17.se.fc1.bias",
                "trunk_output.block3.block3-16.f.se.fc1.bias",
            ),
            (
                "s3.b2.se.fc2.weight",
                "trunk_output.block3.block3-1.f.se.fc2.weight",
            ),
            (
                "s4.b2.conv3.bn.weight",
                "trunk_output.block4.block4-1.f.c.1.weight",
            ),
            (
                "s4.b1.downsample.conv.weight",
                "trunk_output.block4.block4-0.proj.0.weight",
            ),
            (
                "s1.b1.downsample.bn.running_var",
                "trunk_output.block1.block1-0.proj.1.running_var",
            ),
            ("head.fc.weight", "fc.weight"),
        ] {
            assert_eq!(torchvision_name(timm).as_deref(), Some(tv), "{timm}");
            assert_eq!(torchvision_key_to_timm(tv).as_deref(), Some(timm), "{tv}");
        }
        for tv in [
            "trunk_output.block1.block2-0.f.a.0.weight",
            "trunk_output.block1.block1-0.f.d.0.weight",
            "features.0.weight",
            "weight",
        ] {
            assert_eq!(torchvision_key_to_timm(tv), None, "{tv}");
        }
        assert_eq!(torchvision_name("s1.b0.conv1.conv.weight"), None);
        assert_eq!(torchvision_name("s1.b1.conv4.conv.weight"), None);
        assert_eq!(torchvision_name("final_conv.weight"), None);
    }
}
