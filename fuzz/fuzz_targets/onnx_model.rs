#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| byob_fuzz::onnx_model(data));
