//! The traced forward pass as a graph: one eval-mode forward pass with the input as a candle
//! `Var`, walked back from the output through candle's `Op`s and backbone's recorded custom
//! ops ([`backbone::trace`]).
//!
//! Everything that does not depend on the input (weights, batch-norm statistics, tensors
//! computed from them) is a constant holding its computed value: constant folding comes free,
//! since every tensor carries its value.

use crate::{Error, Result};
use backbone::trace::{Trace, TracedOp};
use candle_core::op::Op;
use candle_core::{Tensor, TensorId};
use std::collections::HashMap;

/// A value of the graph: the input, a constant or a node's output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Value {
    /// The graph input.
    Input,
    /// `Graph::consts[i]`.
    Const(usize),
    /// `Graph::nodes[i]`'s output.
    Node(usize),
}

/// What a node computes.
#[derive(Clone)]
pub(crate) enum Kind {
    /// A candle op (its tensor arguments are the node's arguments, in [`op_args`]' order).
    Candle(Op),
    /// A custom op of backbone (its arguments in [`TracedOp::inputs`]' order).
    Traced(TracedOp),
}

impl Kind {
    /// A name for messages and for comparing two traces.
    pub(crate) fn name(&self) -> String {
        match self {
            Kind::Candle(op) => candle_name(op),
            Kind::Traced(op) => op.name().to_string(),
        }
    }
}

/// One node: its op, its arguments, its output's shape and the layer it belongs to.
#[derive(Clone)]
pub(crate) struct Node {
    pub(crate) kind: Kind,
    pub(crate) args: Vec<Value>,
    pub(crate) out: Tensor,
    /// The layer whose output this is, or the nearest named layer before it.
    pub(crate) layer: Option<String>,
}

/// The graph of one traced forward pass, nodes in topological order.
pub(crate) struct Graph {
    pub(crate) input: Tensor,
    pub(crate) consts: Vec<Tensor>,
    pub(crate) nodes: Vec<Node>,
    pub(crate) output: Value,
}

impl Graph {
    /// The tensor behind a value.
    pub(crate) fn tensor(&self, v: Value) -> &Tensor {
        match v {
            Value::Input => &self.input,
            Value::Const(i) => &self.consts[i],
            Value::Node(i) => &self.nodes[i].out,
        }
    }

    /// Walks back from `output` to `input`.
    pub(crate) fn build(input: &Tensor, output: &Tensor, trace: &Trace) -> Result<Graph> {
        let mut graph = Graph {
            input: input.clone(),
            consts: Vec::new(),
            nodes: Vec::new(),
            output: Value::Input,
        };
        let mut memo: HashMap<TensorId, Value> = HashMap::new();
        let mut layer_of: HashMap<TensorId, Option<String>> = HashMap::new();
        let mut stack = vec![(output.clone(), false)];
        while let Some((t, expanded)) = stack.pop() {
            if memo.contains_key(&t.id()) {
                continue;
            }
            if t.id() == input.id() {
                memo.insert(t.id(), Value::Input);
                continue;
            }
            let kind = match trace.ops.get(&t.id()) {
                Some((_, op)) => Some(Kind::Traced(op.clone())),
                None => t.op().clone().map(Kind::Candle),
            };
            let Some(kind) = kind else {
                memo.insert(t.id(), Value::Const(graph.consts.len()));
                graph.consts.push(t.clone());
                continue;
            };
            let args: Vec<Tensor> = match &kind {
                Kind::Traced(op) => op.inputs().into_iter().cloned().collect(),
                Kind::Candle(op) => op_args(op).into_iter().cloned().collect(),
            };
            if !expanded {
                stack.push((t.clone(), true));
                for a in args.iter().rev() {
                    if !memo.contains_key(&a.id()) {
                        stack.push((a.clone(), false));
                    }
                }
                continue;
            }
            let mut values = Vec::with_capacity(args.len());
            for a in &args {
                match memo.get(&a.id()) {
                    Some(v) => values.push(*v),
                    None => {
                        return Err(Error::Trace(format!(
                            "{}: an argument was not visited",
                            kind.name()
                        )))
                    }
                }
            }
            // A broadcast stays a node: folded, a constant broadcast to the batch size would
            // take the traced batch's shape.
            let broadcast = matches!(kind, Kind::Candle(Op::Broadcast(_)));
            let value = if !broadcast && values.iter().all(|v| matches!(v, Value::Const(_))) {
                graph.consts.push(t.clone());
                Value::Const(graph.consts.len() - 1)
            } else {
                let layer = match trace.names.get(&t.id()) {
                    Some((_, name)) => Some(name.clone()),
                    None => args.iter().find_map(|a| layer_of.get(&a.id()).cloned().flatten()),
                };
                layer_of.insert(t.id(), layer.clone());
                graph.nodes.push(Node {
                    kind,
                    args: values,
                    out: t.clone(),
                    layer,
                });
                Value::Node(graph.nodes.len() - 1)
            };
            memo.insert(t.id(), value);
        }
        graph.output = memo
            .get(&output.id())
            .copied()
            .ok_or_else(|| Error::Trace("the output was not visited".into()))?;
        if !matches!(graph.output, Value::Node(_)) {
            return Err(Error::Trace(
                "the output does not depend on the input (a constant or the input itself)".into(),
            ));
        }
        Ok(graph)
    }
}

/// The tensor arguments of a candle op, in a fixed order.
pub(crate) fn op_args(op: &Op) -> Vec<&Tensor> {
    match op {
        Op::Binary(a, b, _) | Op::Matmul(a, b) | Op::Gather(a, b, _) | Op::IndexSelect(a, b, _) => vec![a, b],
        Op::Unary(a, _)
        | Op::Cmp(a, _)
        | Op::Reduce(a, _, _)
        | Op::ToDType(a)
        | Op::Copy(a)
        | Op::Broadcast(a)
        | Op::Narrow(a, _, _, _)
        | Op::Reshape(a)
        | Op::ToDevice(a)
        | Op::Transpose(a, _, _)
        | Op::Permute(a, _)
        | Op::Elu(a, _)
        | Op::Powf(a, _)
        | Op::CustomOp1(a, _) => vec![a],
        Op::Affine { arg, .. }
        | Op::AvgPool2D { arg, .. }
        | Op::MaxPool2D { arg, .. }
        | Op::UpsampleNearest1D { arg, .. }
        | Op::UpsampleNearest2D { arg, .. }
        | Op::UpsampleBilinear2D { arg, .. } => vec![arg],
        Op::Conv1D { arg, kernel, .. }
        | Op::ConvTranspose1D { arg, kernel, .. }
        | Op::Conv2D { arg, kernel, .. }
        | Op::ConvTranspose2D { arg, kernel, .. } => vec![arg, kernel],
        Op::Scatter(a, b, c, _)
        | Op::ScatterAdd(a, b, c, _)
        | Op::IndexAdd(a, b, c, _)
        | Op::WhereCond(a, b, c) => {
            vec![a, b, c]
        }
        Op::SliceScatter0(a, b, _) | Op::CustomOp2(a, b, _) => vec![a, b],
        Op::CustomOp3(a, b, c, _) => vec![a, b, c],
        Op::Cat(ts, _) => ts.iter().collect(),
    }
}

/// A candle op's name, for messages (custom ops by their own name).
pub(crate) fn candle_name(op: &Op) -> String {
    match op {
        Op::Binary(_, _, b) => format!("{b:?}").to_lowercase(),
        Op::Unary(_, u) => format!("{u:?}").to_lowercase(),
        Op::Cmp(..) => "cmp".into(),
        Op::Reduce(_, r, _) => format!("reduce_{r:?}").to_lowercase(),
        Op::Matmul(..) => "matmul".into(),
        Op::Gather(..) => "gather".into(),
        Op::Scatter(..) => "scatter".into(),
        Op::ScatterAdd(..) => "scatter_add".into(),
        Op::IndexSelect(..) => "index_select".into(),
        Op::IndexAdd(..) => "index_add".into(),
        Op::WhereCond(..) => "where_cond".into(),
        Op::Conv1D { .. } => "conv1d".into(),
        Op::ConvTranspose1D { .. } => "conv_transpose1d".into(),
        Op::Conv2D { .. } => "conv2d".into(),
        Op::ConvTranspose2D { .. } => "conv_transpose2d".into(),
        Op::AvgPool2D { .. } => "avg_pool2d".into(),
        Op::MaxPool2D { .. } => "max_pool2d".into(),
        Op::UpsampleNearest1D { .. } => "upsample_nearest1d".into(),
        Op::UpsampleNearest2D { .. } => "upsample_nearest2d".into(),
        Op::UpsampleBilinear2D { .. } => "upsample_bilinear2d".into(),
        Op::Cat(..) => "cat".into(),
        Op::Affine { .. } => "affine".into(),
        Op::ToDType(_) => "to_dtype".into(),
        Op::Copy(_) => "copy".into(),
        Op::Broadcast(_) => "broadcast".into(),
        Op::Narrow(..) => "narrow".into(),
        Op::SliceScatter0(..) => "slice_scatter".into(),
        Op::Reshape(_) => "reshape".into(),
        Op::ToDevice(_) => "to_device".into(),
        Op::Transpose(..) => "transpose".into(),
        Op::Permute(..) => "permute".into(),
        Op::Elu(..) => "elu".into(),
        Op::Powf(..) => "powf".into(),
        Op::CustomOp1(_, c) => format!("custom op {}", c.name()),
        Op::CustomOp2(_, _, c) => format!("custom op {}", c.name()),
        Op::CustomOp3(_, _, _, c) => format!("custom op {}", c.name()),
    }
}
