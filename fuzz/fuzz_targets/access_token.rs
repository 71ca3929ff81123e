#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| latchkey_server::fuzzing::access_token(data));
