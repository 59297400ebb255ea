//! Element types of tensors, numbered exactly as ONNX's `TensorProto.DataType` (the numbering is the
//! spec's, so it lives here in the leaf crate; no protobuf type is involved).

use std::fmt;

/// An ONNX element type. The discriminant is the ONNX `DataType` code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(i32)]
pub enum DType {
    F32 = 1,
    U8 = 2,
    I8 = 3,
    U16 = 4,
    I16 = 5,
    I32 = 6,
    I64 = 7,
    String = 8,
    Bool = 9,
    F16 = 10,
    F64 = 11,
    U32 = 12,
    U64 = 13,
    Complex64 = 14,
    Complex128 = 15,
    BF16 = 16,
    F8E4M3FN = 17,
    F8E4M3FNUZ = 18,
    F8E5M2 = 19,
    F8E5M2FNUZ = 20,
    U4 = 21,
    I4 = 22,
    F4E2M1 = 23,
    F8E8M0 = 24,
    U2 = 25,
    I2 = 26,
    F6E2M3 = 27,
    F6E3M2 = 28,
}

impl DType {
    /// Every element type, in code order.
    pub const ALL: [DType; 28] = [
        DType::F32,
        DType::U8,
        DType::I8,
        DType::U16,
        DType::I16,
        DType::I32,
        DType::I64,
        DType::String,
        DType::Bool,
        DType::F16,
        DType::F64,
        DType::U32,
        DType::U64,
        DType::Complex64,
        DType::Complex128,
        DType::BF16,
        DType::F8E4M3FN,
        DType::F8E4M3FNUZ,
        DType::F8E5M2,
        DType::F8E5M2FNUZ,
        DType::U4,
        DType::I4,
        DType::F4E2M1,
        DType::F8E8M0,
        DType::U2,
        DType::I2,
        DType::F6E2M3,
        DType::F6E3M2,
    ];

    /// The type for an ONNX `DataType` code; `None` for 0 (UNDEFINED) and unknown codes.
    pub fn from_code(code: i32) -> Option<DType> {
        DType::ALL.iter().copied().find(|d| *d as i32 == code)
    }

    /// The ONNX `DataType` code.
    pub fn code(self) -> i32 {
        self as i32
    }

    /// The ONNX spelling (`FLOAT`, `UINT8`, ...), as used in error messages and reports.
    pub fn onnx_name(self) -> &'static str {
        match self {
            DType::F32 => "FLOAT",
            DType::U8 => "UINT8",
            DType::I8 => "INT8",
            DType::U16 => "UINT16",
            DType::I16 => "INT16",
            DType::I32 => "INT32",
            DType::I64 => "INT64",
            DType::String => "STRING",
            DType::Bool => "BOOL",
            DType::F16 => "FLOAT16",
            DType::F64 => "DOUBLE",
            DType::U32 => "UINT32",
            DType::U64 => "UINT64",
            DType::Complex64 => "COMPLEX64",
            DType::Complex128 => "COMPLEX128",
            DType::BF16 => "BFLOAT16",
            DType::F8E4M3FN => "FLOAT8E4M3FN",
            DType::F8E4M3FNUZ => "FLOAT8E4M3FNUZ",
            DType::F8E5M2 => "FLOAT8E5M2",
            DType::F8E5M2FNUZ => "FLOAT8E5M2FNUZ",
            DType::U4 => "UINT4",
            DType::I4 => "INT4",
            DType::F4E2M1 => "FLOAT4E2M1",
            DType::F8E8M0 => "FLOAT8E8M0",
            DType::U2 => "UINT2",
            DType::I2 => "INT2",
            DType::F6E2M3 => "FLOAT6E2M3",
            DType::F6E3M2 => "FLOAT6E3M2",
        }
    }

    /// Short lower-case name (`f32`, `u8`, ...), used in dumps.
    pub fn short_name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::U8 => "u8",
            DType::I8 => "i8",
            DType::U16 => "u16",
            DType::I16 => "i16",
            DType::I32 => "i32",
            DType::I64 => "i64",
            DType::String => "str",
            DType::Bool => "bool",
            DType::F16 => "f16",
            DType::F64 => "f64",
            DType::U32 => "u32",
            DType::U64 => "u64",
            DType::Complex64 => "c64",
            DType::Complex128 => "c128",
            DType::BF16 => "bf16",
            DType::F8E4M3FN => "f8e4m3fn",
            DType::F8E4M3FNUZ => "f8e4m3fnuz",
            DType::F8E5M2 => "f8e5m2",
            DType::F8E5M2FNUZ => "f8e5m2fnuz",
            DType::U4 => "u4",
            DType::I4 => "i4",
            DType::F4E2M1 => "f4e2m1",
            DType::F8E8M0 => "f8e8m0",
            DType::U2 => "u2",
            DType::I2 => "i2",
            DType::F6E2M3 => "f6e2m3",
            DType::F6E3M2 => "f6e3m2",
        }
    }

    /// Bits per element in the packed little-endian `raw_data` layout; `None` for strings.
    pub fn bits(self) -> Option<usize> {
        Some(match self {
            DType::String => return None,
            DType::Bool | DType::U8 | DType::I8 => 8,
            DType::F8E4M3FN
            | DType::F8E4M3FNUZ
            | DType::F8E5M2
            | DType::F8E5M2FNUZ
            | DType::F8E8M0 => 8,
            DType::U16 | DType::I16 | DType::F16 | DType::BF16 => 16,
            DType::F32 | DType::I32 | DType::U32 => 32,
            DType::F64 | DType::I64 | DType::U64 | DType::Complex64 => 64,
            DType::Complex128 => 128,
            DType::U4 | DType::I4 | DType::F4E2M1 => 4,
            DType::U2 | DType::I2 => 2,
            DType::F6E2M3 | DType::F6E3M2 => 6,
        })
    }

    /// Bytes that `n` elements take in the packed `raw_data` layout (sub-byte types round up).
    pub fn byte_len(self, n: usize) -> Option<usize> {
        self.bits().map(|b| (n * b).div_ceil(8))
    }

    /// True for the floating-point types (including f16, bf16 and the float8/float4 formats).
    pub fn is_float(self) -> bool {
        matches!(
            self,
            DType::F32
                | DType::F64
                | DType::F16
                | DType::BF16
                | DType::F8E4M3FN
                | DType::F8E4M3FNUZ
                | DType::F8E5M2
                | DType::F8E5M2FNUZ
                | DType::F4E2M1
                | DType::F8E8M0
                | DType::F6E2M3
                | DType::F6E3M2
        )
    }

    /// True for the integer types qtool quantizes to (8-bit, 16-bit, 4-bit, 2-bit).
    pub fn is_quantized_int(self) -> bool {
        matches!(
            self,
            DType::U8
                | DType::I8
                | DType::U16
                | DType::I16
                | DType::U4
                | DType::I4
                | DType::U2
                | DType::I2
        )
    }

    /// The inclusive integer range of an integer type, if it has one that fits an i64.
    pub fn int_range(self) -> Option<(i64, i64)> {
        Some(match self {
            DType::U8 => (0, 255),
            DType::I8 => (-128, 127),
            DType::U16 => (0, 65535),
            DType::I16 => (-32768, 32767),
            DType::I32 => (i32::MIN as i64, i32::MAX as i64),
            DType::U32 => (0, u32::MAX as i64),
            DType::I64 => (i64::MIN, i64::MAX),
            DType::U4 => (0, 15),
            DType::I4 => (-8, 7),
            DType::U2 => (0, 3),
            DType::I2 => (-2, 1),
            DType::Bool => (0, 1),
            _ => return None,
        })
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.short_name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for d in DType::ALL {
            assert_eq!(DType::from_code(d.code()), Some(d));
        }
        assert_eq!(DType::from_code(0), None);
        assert_eq!(DType::from_code(29), None);
        assert_eq!(DType::from_code(-1), None);
    }

    #[test]
    fn byte_lengths() {
        assert_eq!(DType::F32.byte_len(3), Some(12));
        assert_eq!(DType::I4.byte_len(3), Some(2));
        assert_eq!(DType::U2.byte_len(5), Some(2));
        assert_eq!(DType::String.byte_len(1), None);
    }
}
