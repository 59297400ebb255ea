//! The typed op set: one struct per op with its attributes parsed once at import, the closed [`Op`]
//! enum, and THE table that maps (domain, op type) strings to variants. Op-type strings appear here
//! and at the ONNX import/export boundary only; passes and the executor match on [`Op`].
//!
//! Every attribute field is an `Option`: `None` means absent in the model, so that defaults (which
//! can depend on the opset) are applied by whoever interprets the op, and a round trip never invents
//! an attribute. Attributes the typed struct does not know make the op [`Op::Opaque`] with the reason
//! recorded, so nothing is silently ignored.

use crate::attr::{AttrValue, Attribute, TensorData};

/// The default ONNX domain (`""`, also spelled `ai.onnx`).
pub const DOMAIN_ONNX: &str = "";
/// ONNX Runtime's contrib domain.
pub const DOMAIN_MS: &str = "com.microsoft";

/// Normalizes a domain name: `ai.onnx` and absent both mean the default domain `""`.
pub fn normalize_domain(d: &str) -> &str {
    if d == "ai.onnx" { "" } else { d }
}

/// An op this crate does not model (or whose attributes it could not parse): carried through as is.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Opaque {
    pub domain: String,
    pub op_type: String,
    /// Why a known op type was kept opaque (an attribute of unexpected name or kind), if it was.
    pub reason: Option<String>,
}

/// Reads a typed attribute value out of an [`AttrValue`].
pub trait FromAttr: Sized {
    fn from_attr(v: &AttrValue) -> Option<Self>;
    fn to_attr(&self) -> AttrValue;
}

impl FromAttr for f32 {
    fn from_attr(v: &AttrValue) -> Option<Self> {
        match v {
            AttrValue::Float(x) => Some(*x),
            _ => None,
        }
    }
    fn to_attr(&self) -> AttrValue {
        AttrValue::Float(*self)
    }
}
impl FromAttr for i64 {
    fn from_attr(v: &AttrValue) -> Option<Self> {
        match v {
            AttrValue::Int(x) => Some(*x),
            _ => None,
        }
    }
    fn to_attr(&self) -> AttrValue {
        AttrValue::Int(*self)
    }
}
impl FromAttr for String {
    fn from_attr(v: &AttrValue) -> Option<Self> {
        match v {
            AttrValue::String(x) => String::from_utf8(x.clone()).ok(),
            _ => None,
        }
    }
    fn to_attr(&self) -> AttrValue {
        AttrValue::String(self.as_bytes().to_vec())
    }
}
impl FromAttr for Vec<f32> {
    fn from_attr(v: &AttrValue) -> Option<Self> {
        match v {
            AttrValue::Floats(x) => Some(x.clone()),
            _ => None,
        }
    }
    fn to_attr(&self) -> AttrValue {
        AttrValue::Floats(self.clone())
    }
}
impl FromAttr for Vec<i64> {
    fn from_attr(v: &AttrValue) -> Option<Self> {
        match v {
            AttrValue::Ints(x) => Some(x.clone()),
            _ => None,
        }
    }
    fn to_attr(&self) -> AttrValue {
        AttrValue::Ints(self.clone())
    }
}
impl FromAttr for Vec<String> {
    fn from_attr(v: &AttrValue) -> Option<Self> {
        match v {
            AttrValue::Strings(x) => x
                .iter()
                .map(|s| String::from_utf8(s.clone()).ok())
                .collect(),
            _ => None,
        }
    }
    fn to_attr(&self) -> AttrValue {
        AttrValue::Strings(self.iter().map(|s| s.as_bytes().to_vec()).collect())
    }
}
impl FromAttr for TensorData {
    fn from_attr(v: &AttrValue) -> Option<Self> {
        match v {
            AttrValue::Tensor(x) => Some(x.clone()),
            _ => None,
        }
    }
    fn to_attr(&self) -> AttrValue {
        AttrValue::Tensor(self.clone())
    }
}

macro_rules! define_ops {
    ( $( $(#[$doc:meta])* $variant:ident ( $domain:expr, $op_type:literal $(, $alias_domain:expr)* ) { $( $field:ident : $ty:ty = $attr:literal ),* $(,)? } )* ) => {
        $(
            $(#[$doc])*
            #[derive(Clone, Debug, Default, PartialEq)]
            pub struct $variant {
                $( pub $field: Option<$ty>, )*
            }

            impl $variant {
                /// Parses the typed view of the attributes; an unknown name or a wrong kind is an error.
                #[allow(unused_mut)]
                pub fn from_attrs(attrs: &[Attribute]) -> Result<Self, String> {
                    let mut op = Self::default();
                    for a in attrs {
                        match a.name.as_str() {
                            $( $attr => {
                                op.$field = Some(<$ty as FromAttr>::from_attr(&a.value).ok_or_else(|| {
                                    format!("attribute '{}' has an unexpected kind {:?}", a.name, a.value.kind())
                                })?);
                            } )*
                            other => return Err(format!("attribute '{other}' is not known for {}", $op_type)),
                        }
                    }
                    Ok(op)
                }

                /// The attributes of this op, in declaration order, absent ones left out.
                #[allow(unused_mut)]
                pub fn to_attrs(&self) -> Vec<Attribute> {
                    let mut out = Vec::new();
                    $( if let Some(v) = &self.$field { out.push(Attribute::new($attr, FromAttr::to_attr(v))); } )*
                    out
                }
            }

            impl From<$variant> for Op {
                fn from(v: $variant) -> Op { Op::$variant(v) }
            }
        )*

        /// Every op qtool models, plus [`Op::Opaque`] for the rest.
        #[derive(Clone, Debug, PartialEq)]
        pub enum Op {
            $( $variant($variant), )*
            Opaque(Opaque),
        }

        impl Op {
            /// The ONNX op type.
            pub fn op_type(&self) -> &str {
                match self {
                    $( Op::$variant(_) => $op_type, )*
                    Op::Opaque(o) => &o.op_type,
                }
            }

            /// The domain new nodes of this op are written in.
            pub fn domain(&self) -> &str {
                match self {
                    $( Op::$variant(_) => $domain, )*
                    Op::Opaque(o) => &o.domain,
                }
            }

            /// Parses an op from its (domain, op type) and attributes. Unknown ops, and known ops with
            /// attributes the typed struct does not understand, become [`Op::Opaque`].
            pub fn parse(domain: &str, op_type: &str, attrs: &[Attribute]) -> Op {
                let d = normalize_domain(domain);
                $(
                    if op_type == $op_type && (d == $domain $( || d == $alias_domain )*) {
                        return match $variant::from_attrs(attrs) {
                            Ok(op) => Op::$variant(op),
                            Err(reason) => Op::Opaque(Opaque { domain: d.to_string(), op_type: op_type.to_string(), reason: Some(reason) }),
                        };
                    }
                )*
                Op::Opaque(Opaque { domain: d.to_string(), op_type: op_type.to_string(), reason: None })
            }

            /// The attributes this op writes (for nodes created or changed by passes).
            pub fn to_attrs(&self) -> Vec<Attribute> {
                match self {
                    $( Op::$variant(o) => o.to_attrs(), )*
                    Op::Opaque(_) => Vec::new(),
                }
            }

            /// All (domain, op type) pairs with a typed variant.
            pub fn known() -> &'static [(&'static str, &'static str)] {
                &[ $( ($domain, $op_type), )* ]
            }
        }
    };
}

define_ops! {
    // ---- convolution and linear algebra
    Conv("", "Conv") { auto_pad: String = "auto_pad", dilations: Vec<i64> = "dilations", group: i64 = "group", kernel_shape: Vec<i64> = "kernel_shape", pads: Vec<i64> = "pads", strides: Vec<i64> = "strides" }
    ConvTranspose("", "ConvTranspose") { auto_pad: String = "auto_pad", dilations: Vec<i64> = "dilations", group: i64 = "group", kernel_shape: Vec<i64> = "kernel_shape", output_padding: Vec<i64> = "output_padding", output_shape: Vec<i64> = "output_shape", pads: Vec<i64> = "pads", strides: Vec<i64> = "strides" }
    Gemm("", "Gemm") { alpha: f32 = "alpha", beta: f32 = "beta", trans_a: i64 = "transA", trans_b: i64 = "transB", broadcast: i64 = "broadcast" }
    MatMul("", "MatMul") {}
    Einsum("", "Einsum") { equation: String = "equation" }
    // ---- normalization
    BatchNormalization("", "BatchNormalization") { epsilon: f32 = "epsilon", momentum: f32 = "momentum", training_mode: i64 = "training_mode", spatial: i64 = "spatial", is_test: i64 = "is_test" }
    InstanceNormalization("", "InstanceNormalization") { epsilon: f32 = "epsilon" }
    LayerNormalization("", "LayerNormalization") { axis: i64 = "axis", epsilon: f32 = "epsilon", stash_type: i64 = "stash_type" }
    GroupNormalization("", "GroupNormalization") { epsilon: f32 = "epsilon", num_groups: i64 = "num_groups", stash_type: i64 = "stash_type" }
    Lrn("", "LRN") { alpha: f32 = "alpha", beta: f32 = "beta", bias: f32 = "bias", size: i64 = "size" }
    // ---- activations and element-wise math
    Relu("", "Relu") {}
    LeakyRelu("", "LeakyRelu") { alpha: f32 = "alpha" }
    PRelu("", "PRelu") {}
    Elu("", "Elu") { alpha: f32 = "alpha" }
    Selu("", "Selu") { alpha: f32 = "alpha", gamma: f32 = "gamma" }
    Gelu("", "Gelu") { approximate: String = "approximate" }
    Clip("", "Clip") { min: f32 = "min", max: f32 = "max" }
    Sigmoid("", "Sigmoid") {}
    HardSigmoid("", "HardSigmoid") { alpha: f32 = "alpha", beta: f32 = "beta" }
    HardSwish("", "HardSwish") {}
    Softplus("", "Softplus") {}
    Tanh("", "Tanh") {}
    Erf("", "Erf") {}
    Exp("", "Exp") {}
    Log("", "Log") {}
    Sqrt("", "Sqrt") {}
    Pow("", "Pow") {}
    Reciprocal("", "Reciprocal") {}
    Neg("", "Neg") {}
    Abs("", "Abs") {}
    Floor("", "Floor") {}
    Ceil("", "Ceil") {}
    Round("", "Round") {}
    Sign("", "Sign") {}
    Sin("", "Sin") {}
    Cos("", "Cos") {}
    Softmax("", "Softmax") { axis: i64 = "axis" }
    LogSoftmax("", "LogSoftmax") { axis: i64 = "axis" }
    Add("", "Add") {}
    Sub("", "Sub") {}
    Mul("", "Mul") {}
    Div("", "Div") {}
    Mod("", "Mod") { fmod: i64 = "fmod" }
    Max("", "Max") {}
    Min("", "Min") {}
    Sum("", "Sum") {}
    Mean("", "Mean") {}
    Equal("", "Equal") {}
    Less("", "Less") {}
    LessOrEqual("", "LessOrEqual") {}
    Greater("", "Greater") {}
    GreaterOrEqual("", "GreaterOrEqual") {}
    Not("", "Not") {}
    And("", "And") {}
    Or("", "Or") {}
    Xor("", "Xor") {}
    Where("", "Where") {}
    IsNaN("", "IsNaN") {}
    IsInf("", "IsInf") { detect_negative: i64 = "detect_negative", detect_positive: i64 = "detect_positive" }
    // ---- pooling and reductions
    MaxPool("", "MaxPool") { auto_pad: String = "auto_pad", ceil_mode: i64 = "ceil_mode", dilations: Vec<i64> = "dilations", kernel_shape: Vec<i64> = "kernel_shape", pads: Vec<i64> = "pads", storage_order: i64 = "storage_order", strides: Vec<i64> = "strides" }
    AveragePool("", "AveragePool") { auto_pad: String = "auto_pad", ceil_mode: i64 = "ceil_mode", count_include_pad: i64 = "count_include_pad", dilations: Vec<i64> = "dilations", kernel_shape: Vec<i64> = "kernel_shape", pads: Vec<i64> = "pads", strides: Vec<i64> = "strides" }
    GlobalAveragePool("", "GlobalAveragePool") {}
    GlobalMaxPool("", "GlobalMaxPool") {}
    ReduceMean("", "ReduceMean") { axes: Vec<i64> = "axes", keepdims: i64 = "keepdims", noop_with_empty_axes: i64 = "noop_with_empty_axes" }
    ReduceSum("", "ReduceSum") { axes: Vec<i64> = "axes", keepdims: i64 = "keepdims", noop_with_empty_axes: i64 = "noop_with_empty_axes" }
    ReduceMax("", "ReduceMax") { axes: Vec<i64> = "axes", keepdims: i64 = "keepdims", noop_with_empty_axes: i64 = "noop_with_empty_axes" }
    ReduceMin("", "ReduceMin") { axes: Vec<i64> = "axes", keepdims: i64 = "keepdims", noop_with_empty_axes: i64 = "noop_with_empty_axes" }
    ReduceProd("", "ReduceProd") { axes: Vec<i64> = "axes", keepdims: i64 = "keepdims", noop_with_empty_axes: i64 = "noop_with_empty_axes" }
    ReduceL1("", "ReduceL1") { axes: Vec<i64> = "axes", keepdims: i64 = "keepdims", noop_with_empty_axes: i64 = "noop_with_empty_axes" }
    ReduceL2("", "ReduceL2") { axes: Vec<i64> = "axes", keepdims: i64 = "keepdims", noop_with_empty_axes: i64 = "noop_with_empty_axes" }
    ReduceSumSquare("", "ReduceSumSquare") { axes: Vec<i64> = "axes", keepdims: i64 = "keepdims", noop_with_empty_axes: i64 = "noop_with_empty_axes" }
    ReduceLogSumExp("", "ReduceLogSumExp") { axes: Vec<i64> = "axes", keepdims: i64 = "keepdims", noop_with_empty_axes: i64 = "noop_with_empty_axes" }
    ArgMax("", "ArgMax") { axis: i64 = "axis", keepdims: i64 = "keepdims", select_last_index: i64 = "select_last_index" }
    ArgMin("", "ArgMin") { axis: i64 = "axis", keepdims: i64 = "keepdims", select_last_index: i64 = "select_last_index" }
    TopK("", "TopK") { axis: i64 = "axis", k: i64 = "k", largest: i64 = "largest", sorted: i64 = "sorted" }
    CumSum("", "CumSum") { exclusive: i64 = "exclusive", reverse: i64 = "reverse" }
    // ---- resampling
    Resize("", "Resize") { antialias: i64 = "antialias", axes: Vec<i64> = "axes", coordinate_transformation_mode: String = "coordinate_transformation_mode", cubic_coeff_a: f32 = "cubic_coeff_a", exclude_outside: i64 = "exclude_outside", extrapolation_value: f32 = "extrapolation_value", keep_aspect_ratio_policy: String = "keep_aspect_ratio_policy", mode: String = "mode", nearest_mode: String = "nearest_mode" }
    Upsample("", "Upsample") { mode: String = "mode", scales: Vec<f32> = "scales" }
    DepthToSpace("", "DepthToSpace") { blocksize: i64 = "blocksize", mode: String = "mode" }
    SpaceToDepth("", "SpaceToDepth") { blocksize: i64 = "blocksize" }
    // ---- data movement and shapes
    Concat("", "Concat") { axis: i64 = "axis" }
    Split("", "Split") { axis: i64 = "axis", split: Vec<i64> = "split", num_outputs: i64 = "num_outputs" }
    Slice("", "Slice") { axes: Vec<i64> = "axes", ends: Vec<i64> = "ends", starts: Vec<i64> = "starts" }
    Reshape("", "Reshape") { allowzero: i64 = "allowzero" }
    Transpose("", "Transpose") { perm: Vec<i64> = "perm" }
    Squeeze("", "Squeeze") { axes: Vec<i64> = "axes" }
    Unsqueeze("", "Unsqueeze") { axes: Vec<i64> = "axes" }
    Flatten("", "Flatten") { axis: i64 = "axis" }
    Expand("", "Expand") {}
    Tile("", "Tile") {}
    Pad("", "Pad") { mode: String = "mode", pads: Vec<i64> = "pads", value: f32 = "value" }
    Gather("", "Gather") { axis: i64 = "axis" }
    GatherElements("", "GatherElements") { axis: i64 = "axis" }
    GatherND("", "GatherND") { batch_dims: i64 = "batch_dims" }
    ScatterND("", "ScatterND") { reduction: String = "reduction" }
    ScatterElements("", "ScatterElements") { axis: i64 = "axis", reduction: String = "reduction" }
    Shape("", "Shape") { end: i64 = "end", start: i64 = "start" }
    Size("", "Size") {}
    Cast("", "Cast") { round_mode: String = "round_mode", saturate: i64 = "saturate", to: i64 = "to" }
    CastLike("", "CastLike") { round_mode: String = "round_mode", saturate: i64 = "saturate" }
    Constant("", "Constant") { value: TensorData = "value", value_float: f32 = "value_float", value_floats: Vec<f32> = "value_floats", value_int: i64 = "value_int", value_ints: Vec<i64> = "value_ints", value_string: String = "value_string", value_strings: Vec<String> = "value_strings" }
    ConstantOfShape("", "ConstantOfShape") { value: TensorData = "value" }
    Range("", "Range") {}
    Identity("", "Identity") {}
    Dropout("", "Dropout") { ratio: f32 = "ratio", seed: i64 = "seed", is_test: i64 = "is_test" }
    NonZero("", "NonZero") {}
    OneHot("", "OneHot") { axis: i64 = "axis" }
    Trilu("", "Trilu") { upper: i64 = "upper" }
    // ---- recurrent
    Lstm("", "LSTM") { activation_alpha: Vec<f32> = "activation_alpha", activation_beta: Vec<f32> = "activation_beta", activations: Vec<String> = "activations", clip: f32 = "clip", direction: String = "direction", hidden_size: i64 = "hidden_size", input_forget: i64 = "input_forget", layout: i64 = "layout" }
    Gru("", "GRU") { activation_alpha: Vec<f32> = "activation_alpha", activation_beta: Vec<f32> = "activation_beta", activations: Vec<String> = "activations", clip: f32 = "clip", direction: String = "direction", hidden_size: i64 = "hidden_size", layout: i64 = "layout", linear_before_reset: i64 = "linear_before_reset" }
    // ---- quantization (standard ONNX)
    QuantizeLinear("", "QuantizeLinear", DOMAIN_MS) { axis: i64 = "axis", block_size: i64 = "block_size", output_dtype: i64 = "output_dtype", precision: i64 = "precision", saturate: i64 = "saturate" }
    DequantizeLinear("", "DequantizeLinear", DOMAIN_MS) { axis: i64 = "axis", block_size: i64 = "block_size", output_dtype: i64 = "output_dtype" }
    DynamicQuantizeLinear("", "DynamicQuantizeLinear") {}
    QLinearConv("", "QLinearConv") { auto_pad: String = "auto_pad", dilations: Vec<i64> = "dilations", group: i64 = "group", kernel_shape: Vec<i64> = "kernel_shape", pads: Vec<i64> = "pads", strides: Vec<i64> = "strides" }
    ConvInteger("", "ConvInteger") { auto_pad: String = "auto_pad", dilations: Vec<i64> = "dilations", group: i64 = "group", kernel_shape: Vec<i64> = "kernel_shape", pads: Vec<i64> = "pads", strides: Vec<i64> = "strides" }
    MatMulInteger("", "MatMulInteger") {}
    QLinearMatMul("", "QLinearMatMul") {}
    // ---- quantization (ONNX Runtime contrib ops, domain com.microsoft)
    QLinearAdd(DOMAIN_MS, "QLinearAdd") {}
    QLinearMul(DOMAIN_MS, "QLinearMul") {}
    QLinearGlobalAveragePool(DOMAIN_MS, "QLinearGlobalAveragePool") { channels_last: i64 = "channels_last" }
    QLinearAveragePool(DOMAIN_MS, "QLinearAveragePool") { auto_pad: String = "auto_pad", ceil_mode: i64 = "ceil_mode", channels_last: i64 = "channels_last", count_include_pad: i64 = "count_include_pad", kernel_shape: Vec<i64> = "kernel_shape", pads: Vec<i64> = "pads", strides: Vec<i64> = "strides" }
    QLinearConcat(DOMAIN_MS, "QLinearConcat") { axis: i64 = "axis" }
    QLinearSigmoid(DOMAIN_MS, "QLinearSigmoid") {}
    QLinearLeakyRelu(DOMAIN_MS, "QLinearLeakyRelu") { alpha: f32 = "alpha" }
    QLinearSoftmax(DOMAIN_MS, "QLinearSoftmax") { axis: i64 = "axis", opset: i64 = "opset" }
    QGemm(DOMAIN_MS, "QGemm") { alpha: f32 = "alpha", trans_a: i64 = "transA", trans_b: i64 = "transB" }
    DynamicQuantizeMatMul(DOMAIN_MS, "DynamicQuantizeMatMul") {}
    MatMulIntegerToFloat(DOMAIN_MS, "MatMulIntegerToFloat") {}
}

impl Op {
    /// True for Opaque ops (unknown to qtool, or known with attributes it could not parse).
    pub fn is_opaque(&self) -> bool {
        matches!(self, Op::Opaque(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_emit_conv() {
        let attrs = vec![
            Attribute::new("strides", AttrValue::Ints(vec![2, 2])),
            Attribute::new("group", AttrValue::Int(1)),
        ];
        let op = Op::parse("ai.onnx", "Conv", &attrs);
        let Op::Conv(c) = &op else { panic!("{op:?}") };
        assert_eq!(c.strides.as_deref(), Some(&[2, 2][..]));
        assert_eq!(c.group, Some(1));
        assert_eq!(c.pads, None);
        assert_eq!(op.op_type(), "Conv");
        assert_eq!(op.to_attrs().len(), 2);
    }

    #[test]
    fn unknown_attribute_makes_the_op_opaque_with_a_reason() {
        let attrs = vec![Attribute::new("bogus", AttrValue::Int(1))];
        let op = Op::parse("", "Relu", &attrs);
        let Op::Opaque(o) = op else { panic!() };
        assert!(o.reason.unwrap().contains("bogus"));
    }

    #[test]
    fn wrong_kind_is_opaque() {
        let attrs = vec![Attribute::new("axis", AttrValue::Float(1.0))];
        assert!(Op::parse("", "Concat", &attrs).is_opaque());
    }

    #[test]
    fn contrib_domain_and_aliases() {
        assert!(matches!(
            Op::parse("com.microsoft", "QLinearAdd", &[]),
            Op::QLinearAdd(_)
        ));
        assert!(Op::parse("", "QLinearAdd", &[]).is_opaque());
        assert!(matches!(
            Op::parse("com.microsoft", "QuantizeLinear", &[]),
            Op::QuantizeLinear(_)
        ));
        let o = Op::parse("my.domain", "Foo", &[]);
        assert_eq!((o.domain(), o.op_type()), ("my.domain", "Foo"));
    }
}
