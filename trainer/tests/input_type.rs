//! A model given an input of another dtype (or device) than its weights says which model and
//! what it expects, instead of candle's `dtype mismatch in conv2d`.

use backbone::init::SeededVarMap;
use backbone::Backbone;
use candle_core::{DType, Device, Tensor};

fn check(model: &dyn Backbone, shape: (usize, usize, usize, usize)) {
    for dtype in [DType::F64, DType::F16, DType::U8, DType::I64] {
        let xs = Tensor::zeros(shape, dtype, &Device::Cpu).unwrap();
        let err = model.forward_t(&xs, false).unwrap_err().to_string();
        assert!(
            err.starts_with(model.name())
                && err.contains("F32 on Cpu")
                && err.contains(&format!("got {dtype:?} on Cpu")),
            "{err}"
        );
        let err = model.forward_aux(&xs, true).unwrap_err().to_string();
        assert!(err.contains(&format!("got {dtype:?}")), "{err}");
    }
    let ok = Tensor::zeros(shape, DType::F32, &Device::Cpu).unwrap();
    model.forward_t(&ok, false).unwrap();
}

#[test]
fn lenet_and_resnet_name_the_dtype_they_expect() {
    let vars = SeededVarMap::new(0);
    let lenet = lenet::LeNet::new(
        &lenet::LeNetConfig::lenet5(),
        vars.var_builder(DType::F32, &Device::Cpu),
    )
    .unwrap();
    check(&lenet, (2, 1, 32, 32));
    let vars = SeededVarMap::new(0);
    let resnet = resnet::ResNet::new(
        &resnet::ResNetConfig::resnet18(),
        vars.var_builder(DType::F32, &Device::Cpu),
    )
    .unwrap();
    check(&resnet, (2, 3, 32, 32));
}

#[test]
fn an_f64_model_takes_f64_inputs() {
    let vars = SeededVarMap::new(0);
    let model = lenet::LeNet::new(
        &lenet::LeNetConfig::lenet5(),
        vars.var_builder(DType::F64, &Device::Cpu),
    )
    .unwrap();
    let xs = Tensor::zeros((1, 1, 32, 32), DType::F32, &Device::Cpu).unwrap();
    let err = model.forward_t(&xs, false).unwrap_err().to_string();
    assert!(err.contains("F64 on Cpu") && err.contains("got F32"), "{err}");
    model.forward_t(&xs.to_dtype(DType::F64).unwrap(), false).unwrap();
}
