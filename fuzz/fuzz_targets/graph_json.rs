#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| byob_fuzz::graph_json(data));
