//! Fully connected layer.

use super::Layer;
use crate::init::torch_default;
use crate::summary::{self, LayerRecord};
use crate::{Error, Result};
use candle_core::Tensor;
use candle_nn::{Init, VarBuilder};

/// PyTorch's `nn.Linear`: `y = x W^T + b`, state-dict keys `weight` `[out, in]` and `bias`
/// `[out]`. Accepts `[N, in]` inputs.
#[derive(Debug, Clone)]
pub struct Linear {
    weight: Tensor,
    bias: Option<Tensor>,
    in_features: usize,
    out_features: usize,
    name: String,
}

impl Linear {
    /// A layer with a bias and PyTorch's default initialisation.
    pub fn new(in_features: usize, out_features: usize, vb: VarBuilder) -> Result<Self> {
        let init = torch_default(in_features);
        Self::with_init(in_features, out_features, true, init, init, vb)
    }

    /// A layer with explicit bias flag and initialisation of a fresh layer.
    pub fn with_init(
        in_features: usize,
        out_features: usize,
        bias: bool,
        weight_init: Init,
        bias_init: Init,
        vb: VarBuilder,
    ) -> Result<Self> {
        if in_features == 0 || out_features == 0 {
            return Err(Error::config(format!(
                "linear: features must be positive (in {in_features}, out {out_features})"
            )));
        }
        let weight = vb.get_with_hints((out_features, in_features), "weight", weight_init)?;
        let bias = if bias {
            Some(vb.get_with_hints(out_features, "bias", bias_init)?)
        } else {
            None
        };
        Ok(Self {
            weight,
            bias,
            in_features,
            out_features,
            name: vb.prefix(),
        })
    }

    /// Input width.
    pub fn in_features(&self) -> usize {
        self.in_features
    }

    /// Output width.
    pub fn out_features(&self) -> usize {
        self.out_features
    }
}

impl Layer for Linear {
    fn forward_t(&self, xs: &Tensor, _train: bool) -> Result<Tensor> {
        match *xs.dims() {
            [_, f] if f == self.in_features => {}
            _ => {
                return Err(Error::input_shape(
                    &self.name,
                    format!("[N, {}]", self.in_features),
                    xs.dims(),
                ));
            }
        }
        // (W x^T)^T rather than x W^T: the same product, but the weight's gradient then comes
        // out of the backward pass as a contiguous [out, in] matrix instead of a transposed
        // view that candle would accumulate with strided access (a third of a VGG training
        // step).
        let out = self.weight.matmul(&xs.t()?)?.t()?;
        let out = match &self.bias {
            Some(b) => out.broadcast_add(b)?,
            None => out,
        };
        // One op for an exporter (ONNX's `Gemm`), not two transposes around a product.
        crate::trace::record(&out, || crate::trace::TracedOp::Linear {
            input: xs.clone(),
            weight: self.weight.clone(),
            bias: self.bias.clone(),
        });
        crate::trace::name_output(&out, &self.name);
        summary::record(|| {
            let weights = self.weight.elem_count();
            LayerRecord {
                name: self.name.clone(),
                kind: "Linear".into(),
                input: xs.dims().to_vec(),
                output: out.dims().to_vec(),
                params: weights + self.bias.as_ref().map_or(0, Tensor::elem_count),
                weights,
                macs: (xs.dim(0).unwrap_or(1) * self.in_features * self.out_features) as u64,
            }
        });
        Ok(out)
    }
}
