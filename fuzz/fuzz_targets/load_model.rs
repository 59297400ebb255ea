//! Fuzzes model decoding: arbitrary bytes must never panic, and whatever decodes must re-encode
//! to a fixed point (encode -> decode -> encode gives the same bytes).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(model) = qtool_onnx::decode(data, None) {
        let out = qtool_onnx::encode(&model);
        let again = qtool_onnx::decode(&out, None).expect("a re-encoded model decodes");
        assert_eq!(qtool_onnx::encode(&again), out, "encoding is a fixed point");
    }
});
