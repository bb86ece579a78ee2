//! Two traced graphs (two batch sizes) written as ONNX nodes and initializers.
//!
//! The two traces have the same nodes; the dims that differ between them follow the batch
//! size, and are written batch-agnostic: `-1` in a `Reshape`'s shape, `1` in an `Expand`'s
//! (broadcasting does the rest), an open end in a `Slice`, a `Pad` for a concatenation with
//! filled tensors made in the forward pass (candle's `pad_with_zeros`).

use crate::graph::{Graph, Kind, Value};
use crate::proto::{self, Attr};
use crate::{Error, Result};
use backbone::trace::TracedOp;
use candle_core::op::{BinaryOp, Op, ReduceOp, UnaryOp};
use candle_core::DType;
use onnx_protobuf::tensor_proto::DataType;
use onnx_protobuf::{NodeProto, TensorProto};

/// What the graph becomes: nodes in topological order, initializers, the output's name and
/// dims (`None` where the batch size goes).
pub(crate) struct Lowered {
    pub(crate) nodes: Vec<NodeProto>,
    pub(crate) initializers: Vec<TensorProto>,
    pub(crate) input_dims: Vec<Option<usize>>,
    pub(crate) output: String,
    pub(crate) output_dims: Vec<Option<usize>>,
}

/// Writes `a` (traced at one batch size) as ONNX, with `b` (another batch size) telling which
/// dims follow the batch; `output` names the graph output.
pub(crate) fn lower(a: &Graph, b: &Graph, output: &str) -> Result<Lowered> {
    let const_dyn = compare(a, b)?;
    let mut l = Lower {
        a,
        b,
        const_dyn,
        const_done: vec![false; a.consts.len()],
        partial: vec![false; a.nodes.len()],
        nodes: Vec::new(),
        initializers: Vec::new(),
        fresh: 0,
    };
    for i in 0..a.nodes.len() {
        l.node(i).map_err(|e| match e {
            Error::Why(why) => Error::Layer {
                layer: a.nodes[i].layer.clone().unwrap_or_else(|| "(the input)".into()),
                op: a.nodes[i].kind.name(),
                why,
            },
            other => other,
        })?;
    }
    let out = l.name(a.output)?;
    if let Value::Node(i) = a.output {
        if l.partial[i] {
            return Err(Error::Trace("the output is broadcast to the batch size".into()));
        }
    }
    l.nodes
        .push(proto::node("Identity", output, &[&out], &[output], vec![]));
    prune(&mut l.nodes, &mut l.initializers, output);
    let dims = |v| -> Vec<Option<usize>> {
        let (da, db) = (a.tensor(v).dims(), b.tensor(v).dims());
        da.iter().zip(db).map(|(x, y)| (x == y).then_some(*x)).collect()
    };
    Ok(Lowered {
        input_dims: dims(Value::Input),
        output_dims: dims(a.output),
        nodes: l.nodes,
        initializers: l.initializers,
        output: output.to_string(),
    })
}

/// Drops the nodes whose outputs nothing reads on the way to `output` (an `Expand` whose
/// operand is read unexpanded), then the initializers no remaining node reads.
fn prune(nodes: &mut Vec<NodeProto>, initializers: &mut Vec<TensorProto>, output: &str) {
    let mut used: std::collections::HashSet<String> = [output.to_string()].into();
    let mut keep = vec![false; nodes.len()];
    for (k, node) in nodes.iter().enumerate().rev() {
        if node.output.iter().any(|o| used.contains(o)) {
            keep[k] = true;
            used.extend(node.input.iter().filter(|n| !n.is_empty()).cloned());
        }
    }
    let mut k = 0;
    nodes.retain(|_| {
        k += 1;
        keep[k - 1]
    });
    initializers.retain(|t| used.contains(&t.name));
}

/// Checks that the two traces have the same nodes and the same constants; returns which
/// constants have a shape that follows the batch size.
fn compare(a: &Graph, b: &Graph) -> Result<Vec<bool>> {
    if a.nodes.len() != b.nodes.len() || a.consts.len() != b.consts.len() {
        return Err(Error::Trace(format!(
            "the forward pass is not the same graph at two batch sizes ({} and {} nodes)",
            a.nodes.len(),
            b.nodes.len()
        )));
    }
    for (na, nb) in a.nodes.iter().zip(&b.nodes) {
        if na.kind.name() != nb.kind.name() || na.args != nb.args || na.out.rank() != nb.out.rank() {
            return Err(Error::Layer {
                layer: na.layer.clone().unwrap_or_default(),
                op: na.kind.name(),
                why: "the forward pass takes another path at another batch size".into(),
            });
        }
    }
    let mut dynamic = Vec::with_capacity(a.consts.len());
    for (ca, cb) in a.consts.iter().zip(&b.consts) {
        if ca.dims() != cb.dims() {
            dynamic.push(true);
            continue;
        }
        dynamic.push(false);
        if ca.id() == cb.id() {
            continue;
        }
        let diff = (ca.to_dtype(DType::F64)? - cb.to_dtype(DType::F64)?)?
            .abs()?
            .flatten_all()?
            .max(0)?
            .to_scalar::<f64>()?;
        if diff != 0.0 {
            return Err(Error::Trace(format!(
                "a tensor of shape {:?} depends on the input but is cut from the graph (detached, \
                 or computed outside candle's autograd)",
                ca.dims()
            )));
        }
    }
    Ok(dynamic)
}

struct Lower<'g> {
    a: &'g Graph,
    b: &'g Graph,
    const_dyn: Vec<bool>,
    const_done: Vec<bool>,
    /// Nodes whose output is broadcast with `1` where the batch goes (fine for element-wise
    /// consumers only).
    partial: Vec<bool>,
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    fresh: usize,
}

/// An error about the current node (the caller adds the layer and op).
fn why<T>(msg: impl Into<String>) -> Result<T> {
    Err(Error::Why(msg.into()))
}

impl Lower<'_> {
    /// The name of a value, writing a constant's initializer on first use.
    fn name(&mut self, v: Value) -> Result<String> {
        Ok(match v {
            Value::Input => "input".into(),
            Value::Node(i) => format!("n{i}"),
            Value::Const(i) => {
                if self.const_dyn[i] {
                    return why(format!(
                        "a tensor made in the forward pass with a shape that follows the batch \
                         size ({:?}) is used as data",
                        self.a.consts[i].dims()
                    ));
                }
                let name = format!("c{i}");
                if !self.const_done[i] {
                    self.initializers.push(proto::tensor(&name, &self.a.consts[i])?);
                    self.const_done[i] = true;
                }
                name
            }
        })
    }

    /// A constant made in the forward pass with a shape that follows the batch size, filled
    /// with one value (a scalar broadcast by candle without recording it): that value as a
    /// scalar, which element-wise ops broadcast.
    fn filled(&mut self, c: usize) -> Result<String> {
        let t = self.a.consts[c].to_dtype(DType::F64)?.flatten_all()?;
        let (lo, hi) = (t.min(0)?.to_scalar::<f64>()?, t.max(0)?.to_scalar::<f64>()?);
        if lo != hi {
            return why(format!(
                "a tensor made in the forward pass with a shape that follows the batch size ({:?}) \
                 and more than one value",
                self.a.consts[c].dims()
            ));
        }
        Ok(self.floats(&[], &[lo as f32]))
    }

    /// The names of node `i`'s arguments; `elementwise`: broadcast arguments are fine.
    fn args(&mut self, i: usize, elementwise: bool) -> Result<Vec<String>> {
        let args = self.a.nodes[i].args.clone();
        let mut names = Vec::with_capacity(args.len());
        for v in args {
            if let Value::Node(j) = v {
                if self.partial[j] && !elementwise {
                    return why("an input broadcast to the batch size feeds an op that does not broadcast");
                }
            }
            match v {
                Value::Const(c) if self.const_dyn[c] && elementwise => names.push(self.filled(c)?),
                _ => names.push(self.name(v)?),
            }
        }
        Ok(names)
    }

    /// For the binary node `i`: the operand (its index and the name of what it expands) that is
    /// a broadcast of a smaller tensor while the other operand already has the output's shape,
    /// so that ONNX's own broadcasting gives the same values without materialising it.
    fn expanded_operand(&mut self, i: usize) -> Result<Option<(usize, String)>> {
        let node = &self.a.nodes[i];
        let is_broadcast = |v: Value| match v {
            Value::Node(j) => matches!(self.a.nodes[j].kind, Kind::Candle(Op::Broadcast(_))),
            _ => false,
        };
        if node.args.len() != 2 {
            return Ok(None);
        }
        for k in 0..2 {
            let (this, other) = (node.args[k], node.args[1 - k]);
            let Value::Node(j) = this else { continue };
            if !is_broadcast(this) || is_broadcast(other) {
                continue;
            }
            let full = |g: &Graph| g.tensor(other).dims() == g.nodes[i].out.dims();
            let source = self.a.nodes[j].args[0];
            let steady = match source {
                Value::Const(c) => !self.const_dyn[c],
                _ => true,
            };
            if full(self.a) && full(self.b) && steady {
                return Ok(Some((k, self.name(source)?)));
            }
        }
        Ok(None)
    }

    fn tmp(&mut self) -> String {
        self.fresh += 1;
        format!("t{}", self.fresh)
    }

    fn emit(&mut self, op: &str, inputs: &[&str], out: &str, attrs: Vec<(&str, Attr)>) {
        let name = format!("{op}_{}", self.nodes.len());
        self.nodes.push(proto::node(op, &name, inputs, &[out], attrs));
    }

    /// A fresh `i64` vector initializer.
    fn ints(&mut self, v: &[i64]) -> String {
        self.fresh += 1;
        let name = format!("k{}", self.fresh);
        self.initializers.push(proto::i64_tensor(&name, &[v.len()], v));
        name
    }

    /// A fresh `f32` initializer of shape `dims`.
    fn floats(&mut self, dims: &[usize], v: &[f32]) -> String {
        self.fresh += 1;
        let name = format!("k{}", self.fresh);
        self.initializers.push(proto::f32_tensor(&name, dims, v));
        name
    }

    /// Which dims of a value follow the batch size.
    fn dynamic(&self, v: Value) -> Vec<bool> {
        let (da, db) = (self.a.tensor(v).dims(), self.b.tensor(v).dims());
        da.iter().zip(db).map(|(x, y)| x != y).collect()
    }

    /// A `Reshape` target for the output of node `i`: its dims, `-1` for the one that follows
    /// the batch.
    fn shape_of(&self, i: usize) -> Result<Vec<i64>> {
        let dims = self.a.nodes[i].out.dims();
        let dynamic = self.dynamic(Value::Node(i));
        if dynamic.iter().filter(|d| **d).count() > 1 {
            return why(format!(
                "a shape {dims:?} with more than one dim following the batch size"
            ));
        }
        Ok(dims
            .iter()
            .zip(&dynamic)
            .map(|(&d, &dy)| if dy { -1 } else { d as i64 })
            .collect())
    }

    fn node(&mut self, i: usize) -> Result<()> {
        let out = format!("n{i}");
        let kind = self.a.nodes[i].kind.clone();
        match kind {
            Kind::Traced(op) => self.traced(i, &op, &out),
            Kind::Candle(op) => self.candle(i, &op, &out),
        }
    }

    fn traced(&mut self, i: usize, op: &TracedOp, out: &str) -> Result<()> {
        let args = self.args(
            i,
            matches!(op, TracedOp::AddRelu { .. } | TracedOp::Identity { .. }),
        )?;
        let relu_after = |l: &mut Self, relu: bool, conv: &str| {
            if relu {
                l.emit("Relu", &[conv], out, vec![]);
            } else {
                l.emit("Identity", &[conv], out, vec![]);
            }
        };
        match op {
            TracedOp::Conv {
                weight,
                stride,
                padding,
                dilation,
                groups,
                relu,
                ..
            } => {
                let (_, _, kh, kw) = weight.dims4()?;
                let inputs: Vec<&str> = args.iter().map(String::as_str).collect();
                let conv = self.tmp();
                self.emit(
                    "Conv",
                    &inputs,
                    &conv,
                    conv_attrs((kh, kw), *stride, *padding, *dilation, *groups),
                );
                relu_after(self, *relu, &conv);
            }
            TracedOp::ConvEpilogue {
                weight,
                params,
                epilogue,
                ..
            } => {
                let (cout, _, kh, kw) = weight.dims4()?;
                let f = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<_>>();
                let mut inputs = vec![args[0].clone(), args[1].clone()];
                if let Some(bias) = &epilogue.bias {
                    inputs.push(self.floats(&[cout], &f(bias)));
                }
                let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
                let mut cur = self.tmp();
                let (p, s, d) = (params.padding, params.stride, params.dilation);
                self.emit(
                    "Conv",
                    &inputs,
                    &cur,
                    conv_attrs((kh, kw), (s, s), (p, p), (d, d), params.groups),
                );
                if !epilogue.mean.is_empty() {
                    for (op, v) in [
                        ("Sub", &epilogue.mean),
                        ("Mul", &epilogue.scale),
                        ("Add", &epilogue.shift),
                    ] {
                        let c = self.floats(&[1, cout, 1, 1], &f(v));
                        let next = self.tmp();
                        self.emit(op, &[&cur, &c], &next, vec![]);
                        cur = next;
                    }
                }
                relu_after(self, epilogue.relu, &cur);
            }
            TracedOp::BatchNorm {
                affine,
                eps,
                relu,
                mean,
                ..
            } => {
                let c = mean.elem_count();
                let (scale, shift) = match affine {
                    Some(_) => (args[1].clone(), args[2].clone()),
                    None => (self.floats(&[c], &vec![1.0; c]), self.floats(&[c], &vec![0.0; c])),
                };
                let (m, v) = (&args[args.len() - 2], &args[args.len() - 1]);
                let bn = self.tmp();
                self.emit(
                    "BatchNormalization",
                    &[&args[0], &scale, &shift, m, v],
                    &bn,
                    vec![("epsilon", Attr::Float(*eps as f32))],
                );
                relu_after(self, *relu, &bn);
            }
            TracedOp::Relu { .. } => self.emit("Relu", &[&args[0]], out, vec![]),
            TracedOp::HardSwish { .. } => self.emit("HardSwish", &[&args[0]], out, vec![]),
            TracedOp::Linear { .. } => {
                let inputs: Vec<&str> = args.iter().map(String::as_str).collect();
                self.emit("Gemm", &inputs, out, vec![("transB", Attr::Int(1))]);
            }
            TracedOp::LayerNorm { input, dim, eps, .. } => {
                let rank = input.rank();
                let channels = self.ints(&[input.dim(*dim)? as i64]);
                let (w, b) = (self.tmp(), self.tmp());
                self.emit("Reshape", &[&args[1], &channels], &w, vec![]);
                self.emit("Reshape", &[&args[2], &channels], &b, vec![]);
                let attrs = || vec![("axis", Attr::Int(-1)), ("epsilon", Attr::Float(*eps as f32))];
                if *dim + 1 == rank {
                    self.emit("LayerNormalization", &[&args[0], &w, &b], out, attrs());
                } else if rank == 4 && *dim == 1 {
                    // Over the channels of [N, C, H, W]: in NHWC and back, as PyTorch exports
                    // timm's and torchvision's LayerNorm2d.
                    let (nhwc, normed) = (self.tmp(), self.tmp());
                    self.emit(
                        "Transpose",
                        &[&args[0]],
                        &nhwc,
                        vec![("perm", Attr::Ints(vec![0, 2, 3, 1]))],
                    );
                    self.emit("LayerNormalization", &[&nhwc, &w, &b], &normed, attrs());
                    self.emit(
                        "Transpose",
                        &[&normed],
                        out,
                        vec![("perm", Attr::Ints(vec![0, 3, 1, 2]))],
                    );
                } else {
                    return why("a layer norm over a middle dimension other than an NCHW map's channels");
                }
            }
            TracedOp::HardSigmoid { .. } => {
                let attrs = vec![("alpha", Attr::Float(1.0 / 6.0)), ("beta", Attr::Float(0.5))];
                self.emit("HardSigmoid", &[&args[0]], out, attrs);
            }
            TracedOp::AddRelu { .. } => {
                let sum = self.tmp();
                self.emit("Add", &[&args[0], &args[1]], &sum, vec![]);
                self.emit("Relu", &[&sum], out, vec![]);
            }
            TracedOp::ChannelBias { .. } => {
                let shape = self.ints(&[1, -1, 1, 1]);
                let bias = self.tmp();
                self.emit("Reshape", &[&args[1], &shape], &bias, vec![]);
                self.emit("Add", &[&args[0], &bias], out, vec![]);
            }
            TracedOp::MaxPool { params: p, .. } | TracedOp::AvgPool { params: p, .. } => {
                let mut attrs = vec![
                    (
                        "kernel_shape",
                        Attr::Ints(vec![p.kernel.0 as i64, p.kernel.1 as i64]),
                    ),
                    ("strides", Attr::Ints(vec![p.stride.0 as i64, p.stride.1 as i64])),
                    pads(p.padding),
                    ("ceil_mode", Attr::Int(p.ceil_mode as i64)),
                ];
                let ty = if matches!(op, TracedOp::MaxPool { .. }) {
                    "MaxPool"
                } else {
                    // Without padding PyTorch divides a ceil-mode window running past the
                    // input by the elements it covers: ONNX's count_include_pad = 0.
                    let include = p.count_include_pad && p.padding != (0, 0);
                    attrs.push(("count_include_pad", Attr::Int(include as i64)));
                    "AveragePool"
                };
                self.emit(ty, &[&args[0]], out, attrs);
            }
            TracedOp::AdaptiveAvgPool { input, out: (oh, ow) } => {
                let (_, _, h, w) = input.dims4()?;
                self.adaptive_avg_pool(&args[0], (h, w), (*oh, *ow), out);
            }
            TracedOp::LocalResponseNorm {
                size, alpha, beta, k, ..
            } => self.emit(
                "LRN",
                &[&args[0]],
                out,
                vec![
                    ("size", Attr::Int(*size as i64)),
                    ("alpha", Attr::Float(*alpha as f32)),
                    ("beta", Attr::Float(*beta as f32)),
                    ("bias", Attr::Float(*k as f32)),
                ],
            ),
            TracedOp::Identity { .. } => {
                if let Value::Node(j) = self.a.nodes[i].args[0] {
                    self.partial[i] = self.partial[j];
                }
                self.emit("Identity", &[&args[0]], out, vec![]);
            }
        }
        Ok(())
    }

    /// PyTorch's adaptive average pooling: a global average, an average pooling when the
    /// windows tile the input, otherwise products with the averaging matrices of each axis.
    fn adaptive_avg_pool(&mut self, x: &str, (h, w): (usize, usize), (oh, ow): (usize, usize), out: &str) {
        if (oh, ow) == (1, 1) {
            self.emit("GlobalAveragePool", &[x], out, vec![]);
        } else if h % oh == 0 && w % ow == 0 {
            let (kh, kw) = ((h / oh) as i64, (w / ow) as i64);
            self.emit(
                "AveragePool",
                &[x],
                out,
                vec![
                    ("kernel_shape", Attr::Ints(vec![kh, kw])),
                    ("strides", Attr::Ints(vec![kh, kw])),
                ],
            );
        } else {
            // y = A_h x A_w^T with A[i, j] = 1 / |window i| for j in PyTorch's window i.
            let averaging = |n: usize, o: usize| {
                let mut m = vec![0f32; o * n];
                for i in 0..o {
                    let (start, end) = (i * n / o, ((i + 1) * n).div_ceil(o));
                    for j in start..end {
                        m[i * n + j] = 1.0 / (end - start) as f32;
                    }
                }
                m
            };
            let a_w = averaging(w, ow);
            let mut a_wt = vec![0f32; w * ow];
            for i in 0..ow {
                for j in 0..w {
                    a_wt[j * ow + i] = a_w[i * w + j];
                }
            }
            let a_wt = self.floats(&[w, ow], &a_wt);
            let a_h = averaging(h, oh);
            let a_h = self.floats(&[oh, h], &a_h);
            let cols = self.tmp();
            self.emit("MatMul", &[x, &a_wt], &cols, vec![]);
            self.emit("MatMul", &[&a_h, &cols], out, vec![]);
        }
    }

    fn candle(&mut self, i: usize, op: &Op, out: &str) -> Result<()> {
        let node_dims = self.a.nodes[i].out.dims().to_vec();
        match op {
            Op::Binary(_, _, b) => {
                let args = self.args(i, true)?;
                let ty = match b {
                    BinaryOp::Add => "Add",
                    BinaryOp::Mul => "Mul",
                    BinaryOp::Sub => "Sub",
                    BinaryOp::Div => "Div",
                    BinaryOp::Maximum => "Max",
                    BinaryOp::Minimum => "Min",
                };
                let full = self.a.nodes[i].args.iter().any(|v| match v {
                    Value::Input => true,
                    Value::Node(j) => !self.partial[*j],
                    Value::Const(_) => false,
                });
                self.partial[i] = !full;
                let mut args = args;
                // ONNX's element-wise ops broadcast: an operand expanded to the other's full
                // shape is read unexpanded (the `Expand` is left for `prune` to drop).
                if let Some((k, source)) = self.expanded_operand(i)? {
                    args[k] = source;
                }
                self.emit(ty, &[&args[0], &args[1]], out, vec![]);
            }
            Op::Unary(_, u) => {
                let x = self.args(i, false)?.remove(0);
                self.unary(&x, *u, out)?;
            }
            Op::Affine { mul, add, .. } => {
                let x = self.args(i, false)?.remove(0);
                let mut cur = x;
                if *mul != 1.0 {
                    let c = self.floats(&[], &[*mul as f32]);
                    let next = self.tmp();
                    self.emit("Mul", &[&cur, &c], &next, vec![]);
                    cur = next;
                }
                if *add != 0.0 {
                    let c = self.floats(&[], &[*add as f32]);
                    let next = self.tmp();
                    self.emit("Add", &[&cur, &c], &next, vec![]);
                    cur = next;
                }
                self.emit("Identity", &[&cur], out, vec![]);
            }
            Op::Powf(_, e) | Op::Elu(_, e) => {
                let x = self.args(i, false)?.remove(0);
                if matches!(op, Op::Elu(..)) {
                    self.emit("Elu", &[&x], out, vec![("alpha", Attr::Float(*e as f32))]);
                } else {
                    let c = self.floats(&[], &[*e as f32]);
                    self.emit("Pow", &[&x, &c], out, vec![]);
                }
            }
            Op::Reduce(arg, r, kd) => {
                let x = self.args(i, false)?.remove(0);
                let axes: Vec<i64> = (0..kd.len()).filter(|&d| kd[d] == 1).map(|d| d as i64).collect();
                let kept = if node_dims.len() == kd.len() {
                    out.to_string()
                } else {
                    self.tmp()
                };
                let input = self.dynamic(self.a.nodes[i].args[0]);
                if axes
                    .iter()
                    .any(|&d| input.get(d as usize).copied().unwrap_or(false))
                    || arg.rank() != kd.len()
                {
                    return why("a reduction over the batch");
                }
                match r {
                    ReduceOp::Sum => {
                        let axes = self.ints(&axes);
                        self.emit("ReduceSum", &[&x, &axes], &kept, vec![("keepdims", Attr::Int(1))]);
                    }
                    ReduceOp::Max | ReduceOp::Min => {
                        let ty = if *r == ReduceOp::Max {
                            "ReduceMax"
                        } else {
                            "ReduceMin"
                        };
                        self.emit(
                            ty,
                            &[&x],
                            &kept,
                            vec![("axes", Attr::Ints(axes)), ("keepdims", Attr::Int(1))],
                        );
                    }
                    ReduceOp::ArgMax | ReduceOp::ArgMin => return why("arg-reductions are not exported"),
                }
                if kept != out {
                    let shape = self.shape_of(i)?;
                    let shape = self.ints(&shape);
                    self.emit("Reshape", &[&kept, &shape], out, vec![]);
                }
            }
            Op::Matmul(..) => {
                let args = self.args(i, false)?;
                self.emit("MatMul", &[&args[0], &args[1]], out, vec![]);
            }
            Op::IndexSelect(_, _, dim) | Op::Gather(_, _, dim) => {
                let args = self.args(i, false)?;
                let ty = if matches!(op, Op::Gather(..)) {
                    "GatherElements"
                } else {
                    "Gather"
                };
                self.emit(
                    ty,
                    &[&args[0], &args[1]],
                    out,
                    vec![("axis", Attr::Int(*dim as i64))],
                );
            }
            Op::WhereCond(..) => {
                let args = self.args(i, true)?;
                let cond = self.tmp();
                self.emit(
                    "Cast",
                    &[&args[0]],
                    &cond,
                    vec![("to", Attr::Int(DataType::BOOL as i64))],
                );
                self.emit("Where", &[&cond, &args[1], &args[2]], out, vec![]);
            }
            Op::Conv2D {
                arg,
                kernel,
                padding,
                stride,
                dilation,
            } => {
                let args = self.args(i, false)?;
                let (_, cin, kh, kw) = kernel.dims4()?;
                let groups = arg.dim(1)? / cin.max(1);
                let attrs = conv_attrs(
                    (kh, kw),
                    (*stride, *stride),
                    (*padding, *padding),
                    (*dilation, *dilation),
                    groups,
                );
                self.emit("Conv", &[&args[0], &args[1]], out, attrs);
            }
            Op::AvgPool2D {
                kernel_size, stride, ..
            }
            | Op::MaxPool2D {
                kernel_size, stride, ..
            } => {
                let x = self.args(i, false)?.remove(0);
                let ty = if matches!(op, Op::MaxPool2D { .. }) {
                    "MaxPool"
                } else {
                    "AveragePool"
                };
                let attrs = vec![
                    (
                        "kernel_shape",
                        Attr::Ints(vec![kernel_size.0 as i64, kernel_size.1 as i64]),
                    ),
                    ("strides", Attr::Ints(vec![stride.0 as i64, stride.1 as i64])),
                ];
                self.emit(ty, &[&x], out, attrs);
            }
            Op::UpsampleNearest2D {
                arg,
                target_h,
                target_w,
            } => {
                let x = self.args(i, false)?.remove(0);
                let (_, _, h, w) = arg.dims4()?;
                let scales = self.floats(
                    &[4],
                    &[1.0, 1.0, *target_h as f32 / h as f32, *target_w as f32 / w as f32],
                );
                let attrs = vec![
                    ("mode", Attr::Str("nearest")),
                    ("coordinate_transformation_mode", Attr::Str("asymmetric")),
                    ("nearest_mode", Attr::Str("floor")),
                ];
                self.emit("Resize", &[&x, "", &scales], out, attrs);
            }
            Op::UpsampleBilinear2D {
                arg,
                target_h,
                target_w,
                align_corners,
            } => {
                let x = self.args(i, false)?.remove(0);
                let (_, _, h, w) = arg.dims4()?;
                let scales = self.floats(
                    &[4],
                    &[1.0, 1.0, *target_h as f32 / h as f32, *target_w as f32 / w as f32],
                );
                // PyTorch's half-pixel rule is ONNX's `half_pixel` for outputs longer than 1.
                let mode = match (*align_corners, *target_h > 1 && *target_w > 1) {
                    (true, _) => "align_corners",
                    (false, true) => "half_pixel",
                    (false, false) => "pytorch_half_pixel",
                };
                let attrs = vec![
                    ("mode", Attr::Str("linear")),
                    ("coordinate_transformation_mode", Attr::Str(mode)),
                ];
                self.emit("Resize", &[&x, "", &scales], out, attrs);
            }
            Op::Cat(_, dim) => self.cat(i, *dim, out)?,
            Op::ToDType(_) => {
                let x = self.args(i, true)?.remove(0);
                if let Value::Node(j) = self.a.nodes[i].args[0] {
                    self.partial[i] = self.partial[j];
                }
                let to = proto::elem_type(self.a.nodes[i].out.dtype())?;
                self.emit("Cast", &[&x], out, vec![("to", Attr::Int(to as i64))]);
            }
            Op::Copy(_) | Op::ToDevice(_) => {
                let x = self.args(i, true)?.remove(0);
                if let Value::Node(j) = self.a.nodes[i].args[0] {
                    self.partial[i] = self.partial[j];
                }
                self.emit("Identity", &[&x], out, vec![]);
            }
            Op::Broadcast(arg) => {
                let x = self.args(i, false)?.remove(0);
                let dynamic = self.dynamic(Value::Node(i));
                let (src, offset) = (arg.dims(), node_dims.len() - arg.rank());
                let mut shape = Vec::with_capacity(node_dims.len());
                for (d, &t) in node_dims.iter().enumerate() {
                    let same = d >= offset && src[d - offset] == t;
                    if same {
                        shape.push(1);
                    } else if dynamic[d] {
                        self.partial[i] = true;
                        shape.push(1);
                    } else {
                        shape.push(t as i64);
                    }
                }
                let shape = self.ints(&shape);
                self.emit("Expand", &[&x, &shape], out, vec![]);
            }
            Op::Narrow(arg, dim, start, len) => {
                let x = self.args(i, false)?.remove(0);
                let dynamic = self.dynamic(self.a.nodes[i].args[0]);
                if dynamic[*dim] {
                    if *start == 0 && *len == arg.dim(*dim)? {
                        self.emit("Identity", &[&x], out, vec![]);
                        return Ok(());
                    }
                    return why("a slice of the batch");
                }
                let starts = self.ints(&[*start as i64]);
                let ends = self.ints(&[(*start + *len) as i64]);
                let axes = self.ints(&[*dim as i64]);
                self.emit("Slice", &[&x, &starts, &ends, &axes], out, vec![]);
            }
            Op::Reshape(_) => {
                let x = self.args(i, false)?.remove(0);
                let shape = self.shape_of(i)?;
                let shape = self.ints(&shape);
                self.emit("Reshape", &[&x, &shape], out, vec![]);
            }
            Op::Transpose(_, d1, d2) => {
                let x = self.args(i, false)?.remove(0);
                let mut perm: Vec<i64> = (0..node_dims.len() as i64).collect();
                perm.swap(*d1, *d2);
                self.emit("Transpose", &[&x], out, vec![("perm", Attr::Ints(perm))]);
            }
            Op::Permute(_, dims) => {
                let x = self.args(i, false)?.remove(0);
                let perm = dims.iter().map(|&d| d as i64).collect();
                self.emit("Transpose", &[&x], out, vec![("perm", Attr::Ints(perm))]);
            }
            Op::Cmp(..) => return why("candle does not record a comparison's right-hand side"),
            Op::CustomOp1(_, c) if c.name() == "sigmoid" || c.name() == "softmax-last-dim" => {
                let x = self.args(i, false)?.remove(0);
                if c.name() == "sigmoid" {
                    self.emit("Sigmoid", &[&x], out, vec![]);
                } else {
                    self.emit("Softmax", &[&x], out, vec![("axis", Attr::Int(-1))]);
                }
            }
            Op::CustomOp1(..) | Op::CustomOp2(..) | Op::CustomOp3(..) => {
                return why("a custom op that records no meaning for exporters (backbone::trace)")
            }
            _ => return why("no ONNX form for this op yet"),
        }
        Ok(())
    }

    fn unary(&mut self, x: &str, u: UnaryOp, out: &str) -> Result<()> {
        let simple = match u {
            UnaryOp::Exp => Some("Exp"),
            UnaryOp::Log => Some("Log"),
            UnaryOp::Sin => Some("Sin"),
            UnaryOp::Cos => Some("Cos"),
            UnaryOp::Abs => Some("Abs"),
            UnaryOp::Neg => Some("Neg"),
            UnaryOp::Recip => Some("Reciprocal"),
            UnaryOp::Sqrt => Some("Sqrt"),
            UnaryOp::Erf => Some("Erf"),
            UnaryOp::Relu => Some("Relu"),
            UnaryOp::Tanh => Some("Tanh"),
            UnaryOp::Floor => Some("Floor"),
            UnaryOp::Ceil => Some("Ceil"),
            UnaryOp::Sign => Some("Sign"),
            _ => None,
        };
        if let Some(ty) = simple {
            self.emit(ty, &[x], out, vec![]);
            return Ok(());
        }
        match u {
            UnaryOp::Sqr => self.emit("Mul", &[x, x], out, vec![]),
            UnaryOp::Silu => {
                let s = self.tmp();
                self.emit("Sigmoid", &[x], &s, vec![]);
                self.emit("Mul", &[x, &s], out, vec![]);
            }
            UnaryOp::GeluErf => {
                // 0.5 x (1 + erf(x / sqrt(2)))
                let (r2, one, half) = (
                    self.floats(&[], &[std::f32::consts::SQRT_2]),
                    self.floats(&[], &[1.0]),
                    self.floats(&[], &[0.5]),
                );
                let (a, b, c, d) = (self.tmp(), self.tmp(), self.tmp(), self.tmp());
                self.emit("Div", &[x, &r2], &a, vec![]);
                self.emit("Erf", &[&a], &b, vec![]);
                self.emit("Add", &[&b, &one], &c, vec![]);
                self.emit("Mul", &[x, &c], &d, vec![]);
                self.emit("Mul", &[&d, &half], out, vec![]);
            }
            UnaryOp::Gelu => {
                // 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))
                let k = (2.0f32 / std::f32::consts::PI).sqrt();
                let (ck, c3, one, half) = (
                    self.floats(&[], &[k]),
                    self.floats(&[], &[0.044715]),
                    self.floats(&[], &[1.0]),
                    self.floats(&[], &[0.5]),
                );
                let t: Vec<String> = (0..8).map(|_| self.tmp()).collect();
                self.emit("Mul", &[x, x], &t[0], vec![]);
                self.emit("Mul", &[&t[0], x], &t[1], vec![]);
                self.emit("Mul", &[&t[1], &c3], &t[2], vec![]);
                self.emit("Add", &[x, &t[2]], &t[3], vec![]);
                self.emit("Mul", &[&t[3], &ck], &t[4], vec![]);
                self.emit("Tanh", &[&t[4]], &t[5], vec![]);
                self.emit("Add", &[&t[5], &one], &t[6], vec![]);
                self.emit("Mul", &[x, &t[6]], &t[7], vec![]);
                self.emit("Mul", &[&t[7], &half], out, vec![]);
            }
            other => return why(format!("the unary op {other:?} has no ONNX form here")),
        }
        Ok(())
    }

    /// A concatenation; with filled tensors made in the forward pass around one input (candle's
    /// `pad_with_zeros`), a `Pad`.
    fn cat(&mut self, i: usize, dim: usize, out: &str) -> Result<()> {
        let args = self.a.nodes[i].args.clone();
        let filled: Vec<bool> = args
            .iter()
            .map(|v| matches!(v, Value::Const(c) if self.const_dyn[*c]))
            .collect();
        if !filled.iter().any(|f| *f) {
            let names = self.args(i, false)?;
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            self.emit("Concat", &names, out, vec![("axis", Attr::Int(dim as i64))]);
            return Ok(());
        }
        let data: Vec<usize> = (0..args.len()).filter(|&k| !filled[k]).collect();
        if data.len() != 1 || self.dynamic(args[data[0]])[dim] {
            return why(
                "a concatenation with tensors made in the forward pass whose shape follows the batch size",
            );
        }
        let k = data[0];
        let mut value = None;
        let (mut before, mut after) = (0, 0);
        for (j, v) in args.iter().enumerate() {
            if j == k {
                continue;
            }
            let t = self.a.tensor(*v).to_dtype(DType::F64)?.flatten_all()?;
            let (lo, hi) = (t.min(0)?.to_scalar::<f64>()?, t.max(0)?.to_scalar::<f64>()?);
            if lo != hi || value.is_some_and(|v| v != lo) {
                return why(
                    "a concatenation with tensors made in the forward pass that are not one filled value",
                );
            }
            value = Some(lo);
            let size = self.a.tensor(*v).dim(dim)?;
            if j < k {
                before += size;
            } else {
                after += size;
            }
        }
        let rank = self.a.nodes[i].out.rank();
        let mut pads = vec![0i64; 2 * rank];
        pads[dim] = before as i64;
        pads[rank + dim] = after as i64;
        let x = self.name(args[k])?;
        let pads = self.ints(&pads);
        let value = self.floats(&[], &[value.unwrap_or(0.0) as f32]);
        self.emit(
            "Pad",
            &[&x, &pads, &value],
            out,
            vec![("mode", Attr::Str("constant"))],
        );
        Ok(())
    }
}

/// `Conv`'s attributes.
fn conv_attrs(
    (kh, kw): (usize, usize),
    stride: (usize, usize),
    padding: (usize, usize),
    dilation: (usize, usize),
    groups: usize,
) -> Vec<(&'static str, Attr)> {
    vec![
        ("kernel_shape", Attr::Ints(vec![kh as i64, kw as i64])),
        ("strides", Attr::Ints(vec![stride.0 as i64, stride.1 as i64])),
        pads(padding),
        (
            "dilations",
            Attr::Ints(vec![dilation.0 as i64, dilation.1 as i64]),
        ),
        ("group", Attr::Int(groups as i64)),
    ]
}

/// ONNX's `pads` (begins then ends) for symmetric `(height, width)` padding.
fn pads((ph, pw): (usize, usize)) -> (&'static str, Attr) {
    let (ph, pw) = (ph as i64, pw as i64);
    ("pads", Attr::Ints(vec![ph, pw, ph, pw]))
}
