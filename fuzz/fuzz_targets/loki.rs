//! Any body as a Loki push, protobuf (snappy) and JSON, and any text as a label string and a
//! log line: no panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use nightshift_ingest::loki;

fuzz_target!(|body: &[u8]| {
    let _ = loki::decode_push(Some("application/x-protobuf"), body);
    let _ = loki::decode_push(Some("application/json"), body);
    if let Ok(text) = std::str::from_utf8(body) {
        let _ = loki::parse_labels(text);
        let _ = loki::line_severity(text);
    }
});
