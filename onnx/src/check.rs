//! The structural checker every model goes through before it is written (ONNX's
//! `onnx.checker` in spirit): versions, names, definitions before use, initializer sizes,
//! known ops and their input counts, typed graph inputs and outputs.

use crate::{Error, Result};
use onnx_protobuf::tensor_proto::DataType;
use onnx_protobuf::type_proto::Value as TypeValue;
use onnx_protobuf::{ModelProto, ValueInfoProto};
use protobuf::Enum;
use std::collections::HashSet;

/// The ops the exporter writes, with the number of inputs each takes (min, max; an empty
/// name stands for a left-out optional input).
const OPS: &[(&str, usize, usize)] = &[
    ("Abs", 1, 1),
    ("Add", 2, 2),
    ("AveragePool", 1, 1),
    ("BatchNormalization", 5, 5),
    ("Cast", 1, 1),
    ("Ceil", 1, 1),
    ("Concat", 1, usize::MAX),
    ("Conv", 2, 3),
    ("Cos", 1, 1),
    ("Div", 2, 2),
    ("Elu", 1, 1),
    ("Erf", 1, 1),
    ("Exp", 1, 1),
    ("Expand", 2, 2),
    ("Floor", 1, 1),
    ("Gather", 2, 2),
    ("GatherElements", 2, 2),
    ("Gemm", 2, 3),
    ("GlobalAveragePool", 1, 1),
    ("HardSigmoid", 1, 1),
    ("HardSwish", 1, 1),
    ("Identity", 1, 1),
    ("Log", 1, 1),
    ("LayerNormalization", 1, 3),
    ("LRN", 1, 1),
    ("MatMul", 2, 2),
    ("Max", 2, 2),
    ("MaxPool", 1, 1),
    ("Min", 2, 2),
    ("Mul", 2, 2),
    ("Neg", 1, 1),
    ("Pad", 2, 3),
    ("Pow", 2, 2),
    ("Reciprocal", 1, 1),
    ("ReduceMax", 1, 1),
    ("ReduceMin", 1, 1),
    ("ReduceSum", 1, 2),
    ("Relu", 1, 1),
    ("Reshape", 2, 2),
    ("Resize", 1, 4),
    ("Sigmoid", 1, 1),
    ("Sign", 1, 1),
    ("Sin", 1, 1),
    ("Slice", 3, 5),
    ("Softmax", 1, 1),
    ("Sqrt", 1, 1),
    ("Sub", 2, 2),
    ("Tanh", 1, 1),
    ("Transpose", 1, 1),
    ("Where", 3, 3),
];

/// The lowest default-domain opset the checker accepts (ONNX Runtime 1.2x, TensorRT 10).
pub const MIN_OPSET: i64 = 17;

/// Checks `model`; the error says what is wrong and where.
pub fn check(model: &ModelProto) -> Result<()> {
    let bad = |msg: String| Err(Error::Check(msg));
    if model.ir_version < 8 {
        return bad(format!(
            "IR version {} (opset 17 needs 8 or later)",
            model.ir_version
        ));
    }
    let opset = model
        .opset_import
        .iter()
        .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map(|o| o.version);
    match opset {
        Some(v) if v >= MIN_OPSET => {}
        other => {
            return bad(format!(
                "default-domain opset {other:?}, expected {MIN_OPSET} or later"
            ))
        }
    }
    let Some(graph) = model.graph.as_ref() else {
        return bad("no graph".into());
    };
    let mut defined: HashSet<&str> = HashSet::new();
    if graph.input.is_empty() || graph.output.is_empty() {
        return bad("the graph needs an input and an output".into());
    }
    for v in &graph.input {
        check_typed(v, "graph input")?;
    }
    for v in &graph.output {
        check_typed(v, "graph output")?;
    }
    for v in &graph.input {
        define(&mut defined, &v.name, "graph input")?;
    }
    for t in &graph.initializer {
        define(&mut defined, &t.name, "initializer")?;
        let count: i64 = t.dims.iter().product();
        if t.dims.iter().any(|&d| d < 0) {
            return bad(format!(
                "initializer `{}` has a negative dim {:?}",
                t.name, t.dims
            ));
        }
        let size = match DataType::from_i32(t.data_type) {
            Some(DataType::FLOAT) => 4,
            Some(DataType::DOUBLE) | Some(DataType::INT64) => 8,
            Some(DataType::UINT8) | Some(DataType::BOOL) => 1,
            _ => {
                return bad(format!(
                    "initializer `{}` has the unexpected data type {}",
                    t.name, t.data_type
                ))
            }
        };
        if t.raw_data.len() as i64 != count * size {
            return bad(format!(
                "initializer `{}` of dims {:?} holds {} bytes, expected {}",
                t.name,
                t.dims,
                t.raw_data.len(),
                count * size
            ));
        }
    }
    let mut node_names = HashSet::new();
    for n in &graph.node {
        if !node_names.insert(n.name.as_str()) {
            return bad(format!("node name `{}` used twice", n.name));
        }
        let Some(&(_, lo, hi)) = OPS.iter().find(|(op, _, _)| *op == n.op_type) else {
            return bad(format!(
                "node `{}`: op `{}` is not one the exporter writes",
                n.name, n.op_type
            ));
        };
        if !n.domain.is_empty() {
            return bad(format!(
                "node `{}`: domain `{}`, expected the default",
                n.name, n.domain
            ));
        }
        if n.input.len() < lo || n.input.len() > hi {
            return bad(format!(
                "node `{}` ({}) has {} inputs, expected {lo} to {hi}",
                n.name,
                n.op_type,
                n.input.len()
            ));
        }
        for (k, i) in n.input.iter().enumerate() {
            let optional = i.is_empty() && k > 0;
            if !optional && !defined.contains(i.as_str()) {
                return bad(format!(
                    "node `{}` ({}) reads `{i}`, not defined before it",
                    n.name, n.op_type
                ));
            }
        }
        if n.output.len() != 1 {
            return bad(format!(
                "node `{}` has {} outputs, expected 1",
                n.name,
                n.output.len()
            ));
        }
        for o in &n.output {
            define(&mut defined, o, "node output")?;
        }
    }
    for v in &graph.output {
        if !defined.contains(v.name.as_str()) {
            return bad(format!("graph output `{}` is not computed", v.name));
        }
    }
    Ok(())
}

/// Adds `name` to the defined values, refusing an empty or repeated name.
fn define<'a>(defined: &mut HashSet<&'a str>, name: &'a str, what: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::Check(format!("{what} with an empty name")));
    }
    if !defined.insert(name) {
        return Err(Error::Check(format!("{what} `{name}` defined twice")));
    }
    Ok(())
}

/// A graph input or output must be a typed tensor with a shape.
fn check_typed(v: &ValueInfoProto, what: &str) -> Result<()> {
    let ok = match v.type_.as_ref().and_then(|t| t.value.as_ref()) {
        Some(TypeValue::TensorType(t)) => t.elem_type != 0 && t.shape.is_some(),
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(Error::Check(format!(
            "{what} `{}` is not a typed tensor with a shape",
            v.name
        )))
    }
}
