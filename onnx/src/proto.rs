//! Small builders over `onnx-protobuf`'s messages: nodes, attributes, tensors, value infos.

use crate::{Error, Result};
use candle_core::{DType, Tensor};
use onnx_protobuf::attribute_proto::AttributeType;
use onnx_protobuf::tensor_proto::DataType;
use onnx_protobuf::tensor_shape_proto::{dimension, Dimension};
use onnx_protobuf::type_proto::{self, Value as TypeValue};
use onnx_protobuf::{AttributeProto, NodeProto, TensorProto, TensorShapeProto, TypeProto, ValueInfoProto};
use protobuf::{EnumOrUnknown, MessageField};

/// An attribute value.
pub(crate) enum Attr {
    Int(i64),
    Ints(Vec<i64>),
    Float(f32),
    Str(&'static str),
}

/// A node of `op_type` from `inputs` to `outputs`.
pub(crate) fn node(
    op_type: &str,
    name: &str,
    inputs: &[&str],
    outputs: &[&str],
    attrs: Vec<(&str, Attr)>,
) -> NodeProto {
    let mut n = NodeProto::new();
    n.op_type = op_type.to_string();
    n.name = name.to_string();
    n.input = inputs.iter().map(|s| s.to_string()).collect();
    n.output = outputs.iter().map(|s| s.to_string()).collect();
    n.attribute = attrs
        .into_iter()
        .map(|(name, value)| {
            let mut a = AttributeProto::new();
            a.name = name.to_string();
            let ty = match value {
                Attr::Int(i) => {
                    a.i = i;
                    AttributeType::INT
                }
                Attr::Ints(v) => {
                    a.ints = v;
                    AttributeType::INTS
                }
                Attr::Float(f) => {
                    a.f = f;
                    AttributeType::FLOAT
                }
                Attr::Str(s) => {
                    a.s = s.as_bytes().to_vec();
                    AttributeType::STRING
                }
            };
            a.type_ = EnumOrUnknown::new(ty);
            a
        })
        .collect();
    n
}

/// An `f32` tensor named `name` of shape `dims`.
pub(crate) fn f32_tensor(name: &str, dims: &[usize], data: &[f32]) -> TensorProto {
    let mut t = TensorProto::new();
    t.name = name.to_string();
    t.dims = dims.iter().map(|&d| d as i64).collect();
    t.data_type = DataType::FLOAT as i32;
    t.raw_data = data.iter().flat_map(|v| v.to_le_bytes()).collect();
    t
}

/// An `i64` tensor (shapes, axes, indices) named `name` of shape `dims`.
pub(crate) fn i64_tensor(name: &str, dims: &[usize], data: &[i64]) -> TensorProto {
    let mut t = TensorProto::new();
    t.name = name.to_string();
    t.dims = dims.iter().map(|&d| d as i64).collect();
    t.data_type = DataType::INT64 as i32;
    t.raw_data = data.iter().flat_map(|v| v.to_le_bytes()).collect();
    t
}

/// ONNX's element type for a candle dtype (integers of index tensors become `INT64`).
pub(crate) fn elem_type(dtype: DType) -> Result<DataType> {
    Ok(match dtype {
        DType::F32 => DataType::FLOAT,
        DType::F64 => DataType::DOUBLE,
        DType::U8 => DataType::UINT8,
        DType::U32 | DType::I64 => DataType::INT64,
        other => return Err(Error::Unsupported(format!("tensors of dtype {other:?}"))),
    })
}

/// A candle tensor as an initializer named `name` (`u32` as `INT64`).
pub(crate) fn tensor(name: &str, t: &Tensor) -> Result<TensorProto> {
    let dims = t.dims().to_vec();
    let flat = t.flatten_all()?;
    Ok(match t.dtype() {
        DType::F32 => f32_tensor(name, &dims, &flat.to_vec1::<f32>()?),
        DType::U32 | DType::I64 => {
            let v = flat.to_dtype(DType::I64)?.to_vec1::<i64>()?;
            i64_tensor(name, &dims, &v)
        }
        DType::F64 => {
            let mut p = TensorProto::new();
            p.name = name.to_string();
            p.dims = dims.iter().map(|&d| d as i64).collect();
            p.data_type = DataType::DOUBLE as i32;
            p.raw_data = flat
                .to_vec1::<f64>()?
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect();
            p
        }
        DType::U8 => {
            let mut p = TensorProto::new();
            p.name = name.to_string();
            p.dims = dims.iter().map(|&d| d as i64).collect();
            p.data_type = DataType::UINT8 as i32;
            p.raw_data = flat.to_vec1::<u8>()?;
            p
        }
        other => return Err(Error::Unsupported(format!("constant {name} of dtype {other:?}"))),
    })
}

/// A tensor value info: `name`, element type, dims (`None`: the symbolic `batch`).
pub(crate) fn value_info(name: &str, elem: DataType, dims: &[Option<usize>]) -> ValueInfoProto {
    let mut shape = TensorShapeProto::new();
    shape.dim = dims
        .iter()
        .map(|d| {
            let mut dim = Dimension::new();
            dim.value = Some(match d {
                Some(v) => dimension::Value::DimValue(*v as i64),
                None => dimension::Value::DimParam("batch".into()),
            });
            dim
        })
        .collect();
    let mut tensor = type_proto::Tensor::new();
    tensor.elem_type = elem as i32;
    tensor.shape = MessageField::some(shape);
    let mut ty = TypeProto::new();
    ty.value = Some(TypeValue::TensorType(tensor));
    let mut v = ValueInfoProto::new();
    v.name = name.to_string();
    v.type_ = MessageField::some(ty);
    v
}
