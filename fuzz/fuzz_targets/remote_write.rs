//! Any body through the remote-write decoder (as snappy, and as the protobuf inside it): no
//! panic, and every sample kept is valid.
#![no_main]
use libfuzzer_sys::fuzz_target;
use nightshift_ingest::remote_write::{self, MAX_FUTURE_MS, WriteBatch, WriteRequest};
use prost::Message;

const NOW: i64 = 1_700_000_000_000;

fn check(batch: &WriteBatch) {
    for (key, ts, value) in &batch.samples {
        assert!(remote_write::valid_metric_name(&key.metric));
        assert!(key.labels.keys().all(|k| remote_write::valid_label_name(k)));
        assert!(*ts <= NOW + MAX_FUTURE_MS);
        assert!(!value.is_nan());
    }
}

fuzz_target!(|body: &[u8]| {
    if let Ok((batch, _)) = remote_write::decode_write_request(
        Some("snappy"),
        Some("application/x-protobuf"),
        body,
        NOW,
    ) {
        check(&batch);
    }
    if let Ok(req) = WriteRequest::decode(body) {
        check(&remote_write::normalise(req, NOW).0);
    }
});
