//! Any body as OTLP metrics, traces and logs, in protobuf and in JSON, gzipped or not, and
//! through the conversions to samples, calls and log records: no panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use nightshift_ingest::otlp::{
    self, ExportLogsServiceRequest, ExportMetricsServiceRequest, ExportTraceServiceRequest,
};

fuzz_target!(|body: &[u8]| {
    for ct in ["application/x-protobuf", "application/json"] {
        for ce in [None, Some("gzip")] {
            if let Ok((m, _)) =
                otlp::decode::<ExportMetricsServiceRequest>("metrics", Some(ct), ce, body)
            {
                let samples = otlp::metric_samples(&m);
                let mut acc = otlp::DeltaToCumulative::new(1000);
                let _ = acc.accumulate(samples.deltas);
            }
            if let Ok((t, _)) =
                otlp::decode::<ExportTraceServiceRequest>("traces", Some(ct), ce, body)
            {
                let _ = otlp::span_edges(&t);
            }
            if let Ok((l, _)) = otlp::decode::<ExportLogsServiceRequest>("logs", Some(ct), ce, body)
            {
                let _ = otlp::log_records(&l);
            }
        }
    }
});
