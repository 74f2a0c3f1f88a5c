//! The persistent queue's on-disk form of a request. Apart from the queue
//! because the fuzz targets (`fuzz/`) decode and encode it on their own.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use prost::Message as _;

use crate::pipeline::Payload;

/// Tag byte of a queued request, followed by the signal's OTLP
/// `Export*ServiceRequest` in protobuf.
const TAG_LOGS: u8 = 1;
const TAG_METRICS: u8 = 2;

/// The on-disk form of a request (public for the fuzz targets, `fuzz/`).
#[doc(hidden)]
pub fn encode_request(payload: &Payload) -> Vec<u8> {
    // Encoded as the repeated field 1 of the service request, without first
    // copying the resources into one.
    fn encode_all<M: prost::Message>(tag: u8, resources: &[M]) -> Vec<u8> {
        let len: usize = resources
            .iter()
            .map(|r| prost::encoding::message::encoded_len(1, r))
            .sum();
        let mut buf = Vec::with_capacity(1 + len);
        buf.push(tag);
        for r in resources {
            prost::encoding::message::encode(1, r, &mut buf);
        }
        buf
    }
    match payload {
        Payload::Logs(rl) => encode_all(TAG_LOGS, rl),
        Payload::Metrics(rm) => encode_all(TAG_METRICS, rm),
    }
}

/// A request from its on-disk form (public for the fuzz targets, `fuzz/`).
#[doc(hidden)]
pub fn decode_request(bytes: &[u8]) -> Result<Payload, String> {
    let (tag, body) = bytes.split_first().ok_or("empty item")?;
    match *tag {
        TAG_LOGS => ExportLogsServiceRequest::decode(body)
            .map(|r| Payload::Logs(r.resource_logs))
            .map_err(|e| format!("invalid logs request: {e}")),
        TAG_METRICS => ExportMetricsServiceRequest::decode(body)
            .map(|r| Payload::Metrics(r.resource_metrics))
            .map_err(|e| format!("invalid metrics request: {e}")),
        other => Err(format!("unknown signal tag {other}")),
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::metrics::v1::{
        metric, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics,
    };

    use super::*;
    use crate::exporters::helper::tests::log_payload;

    #[test]
    fn requests_round_trip_through_their_disk_form() {
        let logs = log_payload("x");
        let encoded = encode_request(&logs);
        assert_eq!(encoded[0], TAG_LOGS);
        let expected = ExportLogsServiceRequest {
            resource_logs: match &logs {
                Payload::Logs(rl) => rl.clone(),
                Payload::Metrics(_) => Vec::new(),
            },
        }
        .encode_to_vec();
        assert_eq!(&encoded[1..], &expected[..]);
        assert_eq!(decode_request(&encoded), Ok(logs));

        let metrics = Payload::Metrics(vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "linux.oom.kills".into(),
                    data: Some(metric::Data::Gauge(Gauge {
                        data_points: vec![NumberDataPoint::default()],
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }]);
        assert_eq!(decode_request(&encode_request(&metrics)), Ok(metrics));
        assert!(decode_request(&[]).is_err());
        assert!(decode_request(&[9, 1, 2]).is_err());
        assert!(decode_request(&[TAG_LOGS, 0xff, 0xff]).is_err());
    }
}
