//! The encoded form of a request: what the persistent queue writes to disk,
//! and what the in-memory queue holds for a client that sends protobuf
//! ([`EncodedRequest`]). Apart from the queues because the fuzz targets
//! (`fuzz/`) decode and encode it on their own.

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use prost::Message as _;

use super::queue_config::Sizer;
use crate::pipeline::{Payload, Signal};

/// Tag byte of a queued request, followed by the signal's OTLP
/// `Export*ServiceRequest` in protobuf (written by earlier versions; still
/// read).
const TAG_LOGS: u8 = 1;
const TAG_METRICS: u8 = 2;
/// Tag byte, then the request's item count (u64 LE), then the protobuf: the
/// count lets a restarted queue recount its items (`sizer: items`) from the
/// head of each file without decoding it.
const TAG_LOGS_COUNTED: u8 = 3;
const TAG_METRICS_COUNTED: u8 = 4;

/// Bytes before the protobuf in the counted form.
pub const COUNTED_HEAD: usize = 9;

/// What one queued request counts for, in each of the sizer's units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestSize {
    pub signal: Signal,
    /// Log records or metric data points.
    pub items: u64,
    /// The serialized `Export*ServiceRequest` protobuf.
    pub bytes: u64,
}

impl RequestSize {
    pub fn of(payload: &Payload) -> RequestSize {
        fn len_all<M: prost::Message>(resources: &[M]) -> usize {
            resources
                .iter()
                .map(|r| prost::encoding::message::encoded_len(1, r))
                .sum()
        }
        let bytes = match payload {
            Payload::Logs(rl) => len_all(rl),
            Payload::Metrics(rm) => len_all(rm),
        };
        RequestSize {
            signal: payload.signal(),
            items: u64::try_from(payload.item_count()).unwrap_or(u64::MAX),
            bytes: u64::try_from(bytes).unwrap_or(u64::MAX),
        }
    }

    /// The size of `payload` in `sizer`'s unit, computing only that one
    /// (the byte size walks the whole request).
    pub fn of_in_unit(payload: &Payload, sizer: Sizer) -> u64 {
        match sizer {
            Sizer::Requests => 1,
            Sizer::Items => u64::try_from(payload.item_count()).unwrap_or(u64::MAX),
            Sizer::Bytes => RequestSize::of(payload).bytes,
        }
    }

    /// The size in `sizer`'s unit.
    pub fn in_unit(&self, sizer: Sizer) -> u64 {
        match sizer {
            Sizer::Requests => 1,
            Sizer::Items => self.items,
            Sizer::Bytes => self.bytes,
        }
    }
}

/// The on-disk form of a request (public for the fuzz targets, `fuzz/`).
#[doc(hidden)]
pub fn encode_request(payload: &Payload) -> Vec<u8> {
    // Encoded as the repeated field 1 of the service request, without first
    // copying the resources into one.
    fn encode_all<M: prost::Message>(tag: u8, items: usize, resources: &[M]) -> Vec<u8> {
        let len: usize = resources
            .iter()
            .map(|r| prost::encoding::message::encoded_len(1, r))
            .sum();
        let mut buf = Vec::with_capacity(COUNTED_HEAD + len);
        buf.push(tag);
        buf.extend_from_slice(&u64::try_from(items).unwrap_or(u64::MAX).to_le_bytes());
        for r in resources {
            prost::encoding::message::encode(1, r, &mut buf);
        }
        buf
    }
    let items = payload.item_count();
    match payload {
        Payload::Logs(rl) => {
            let mut head = [TAG_LOGS_COUNTED; COUNTED_HEAD];
            head[1..].copy_from_slice(&u64::try_from(items).unwrap_or(u64::MAX).to_le_bytes());
            super::logs_encoding::encode_resource_logs(&head, rl)
        }
        Payload::Metrics(rm) => encode_all(TAG_METRICS_COUNTED, items, rm),
    }
}

/// A request encoded once, in its on-disk form (the counted head, then the
/// `Export*ServiceRequest` protobuf). The in-memory queue holds this instead
/// of the decoded payload for a client that sends protobuf: a third or less
/// of the memory (the decoded records are many small allocations), and a
/// retry sends the same bytes without encoding them again.
#[derive(Debug, Clone, PartialEq)]
pub struct EncodedRequest {
    size: RequestSize,
    data: Bytes,
    /// It carries an OOM kill (see [`crate::pipeline::Batch::urgent`]); not
    /// kept on disk.
    urgent: bool,
}

impl EncodedRequest {
    pub fn encode(payload: &Payload) -> EncodedRequest {
        let data = Bytes::from(encode_request(payload));
        let bytes = data.len().saturating_sub(COUNTED_HEAD);
        EncodedRequest {
            size: RequestSize {
                signal: payload.signal(),
                items: u64::try_from(payload.item_count()).unwrap_or(u64::MAX),
                bytes: u64::try_from(bytes).unwrap_or(u64::MAX),
            },
            data,
            urgent: false,
        }
    }

    /// Marks the request as urgent (or not): a client may send it ahead of
    /// others (see [`Self::is_urgent`]).
    #[must_use]
    pub fn marked_urgent(mut self, urgent: bool) -> EncodedRequest {
        self.urgent = urgent;
        self
    }

    /// Whether it carries an OOM kill, to be sent apart from bulk traffic.
    pub fn is_urgent(&self) -> bool {
        self.urgent
    }

    pub fn size(&self) -> RequestSize {
        self.size
    }

    pub fn signal(&self) -> Signal {
        self.size.signal
    }

    /// Log records or metric data points.
    pub fn item_count(&self) -> usize {
        usize::try_from(self.size.items).unwrap_or(usize::MAX)
    }

    /// The `Export*ServiceRequest` protobuf (shares the buffer).
    pub fn body(&self) -> Bytes {
        self.data.slice(COUNTED_HEAD.min(self.data.len())..)
    }

    /// The payload again (for a client that cannot send the encoding).
    pub fn decode(&self) -> Result<Payload, String> {
        decode_request(&self.data)
    }
}

/// Splits an item into its signal tag (normalised to the uncounted one),
/// the stored item count if any, and the protobuf.
fn split(bytes: &[u8]) -> Result<(u8, Option<u64>, &[u8]), String> {
    let (tag, body) = bytes.split_first().ok_or("empty item")?;
    match *tag {
        TAG_LOGS | TAG_METRICS => Ok((*tag, None, body)),
        TAG_LOGS_COUNTED | TAG_METRICS_COUNTED => {
            let (count, body) = body
                .split_first_chunk::<8>()
                .ok_or("item too short for its item count")?;
            Ok((*tag - 2, Some(u64::from_le_bytes(*count)), body))
        }
        other => Err(format!("unknown signal tag {other}")),
    }
}

/// A request from its on-disk form (public for the fuzz targets, `fuzz/`).
#[doc(hidden)]
pub fn decode_request(bytes: &[u8]) -> Result<Payload, String> {
    let (tag, _count, body) = split(bytes)?;
    if tag == TAG_LOGS {
        ExportLogsServiceRequest::decode(body)
            .map(|r| Payload::Logs(r.resource_logs))
            .map_err(|e| format!("invalid logs request: {e}"))
    } else {
        ExportMetricsServiceRequest::decode(body)
            .map(|r| Payload::Metrics(r.resource_metrics))
            .map_err(|e| format!("invalid metrics request: {e}"))
    }
}

/// The size of a stored request from the first [`COUNTED_HEAD`] bytes of
/// its on-disk form (`head`) and that form's whole length: `Ok(None)` when
/// the item is of the older, uncounted form (decode it whole to count it).
pub fn size_from_head(head: &[u8], stored_len: usize) -> Result<Option<RequestSize>, String> {
    let (tag, count, _) = split(head)?;
    let signal = if tag == TAG_LOGS {
        Signal::Logs
    } else {
        Signal::Metrics
    };
    let Some(items) = count else {
        return Ok(None);
    };
    let bytes = stored_len
        .checked_sub(COUNTED_HEAD)
        .ok_or("item shorter than its head")?;
    Ok(Some(RequestSize {
        signal,
        items,
        bytes: u64::try_from(bytes).unwrap_or(u64::MAX),
    }))
}

/// The size of a stored request in either form, decoding it when needed.
pub fn size_of_stored(stored: &[u8]) -> Result<RequestSize, String> {
    if let Some(size) = size_from_head(stored, stored.len())? {
        return Ok(size);
    }
    decode_request(stored).map(|payload| RequestSize::of(&payload))
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
        assert_eq!(encoded[0], TAG_LOGS_COUNTED);
        // log_payload holds two records.
        assert_eq!(encoded[1..COUNTED_HEAD], 2u64.to_le_bytes());
        let expected = ExportLogsServiceRequest {
            resource_logs: match &logs {
                Payload::Logs(rl) => rl.clone(),
                Payload::Metrics(_) => Vec::new(),
            },
        }
        .encode_to_vec();
        assert_eq!(&encoded[COUNTED_HEAD..], &expected[..]);
        assert_eq!(decode_request(&encoded), Ok(logs.clone()));
        let size = RequestSize {
            signal: Signal::Logs,
            items: 2,
            bytes: expected.len() as u64,
        };
        assert_eq!(RequestSize::of(&logs), size);
        assert_eq!(
            size_from_head(&encoded[..COUNTED_HEAD], encoded.len()),
            Ok(Some(size))
        );
        assert_eq!(size_of_stored(&encoded), Ok(size));
        // The older form (no count) still decodes and is counted by decoding.
        let mut old = vec![TAG_LOGS];
        old.extend_from_slice(&expected);
        assert_eq!(decode_request(&old), Ok(logs));
        assert_eq!(size_from_head(&old[..COUNTED_HEAD], old.len()), Ok(None));
        assert_eq!(size_of_stored(&old), Ok(size));
        assert_eq!(
            (
                size.in_unit(Sizer::Requests),
                size.in_unit(Sizer::Items),
                size.in_unit(Sizer::Bytes)
            ),
            (1, 2, expected.len() as u64)
        );

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
        assert_eq!(
            decode_request(&encode_request(&metrics)),
            Ok(metrics.clone())
        );
        let encoded = EncodedRequest::encode(&metrics);
        assert_eq!(encoded.signal(), Signal::Metrics);
        assert_eq!(encoded.item_count(), 1);
        assert_eq!(encoded.size(), RequestSize::of(&metrics));
        assert_eq!(
            encoded.body(),
            ExportMetricsServiceRequest {
                resource_metrics: match &metrics {
                    Payload::Metrics(rm) => rm.clone(),
                    Payload::Logs(_) => Vec::new(),
                },
            }
            .encode_to_vec()
        );
        assert_eq!(encoded.decode(), Ok(metrics));
        assert!(decode_request(&[]).is_err());
        assert!(decode_request(&[9, 1, 2]).is_err());
        assert!(decode_request(&[TAG_LOGS, 0xff, 0xff]).is_err());
        assert!(decode_request(&[TAG_LOGS_COUNTED, 1, 0]).is_err());
    }
}
