//! Encodes `ResourceLogs` as prost does, with each log record's size
//! computed once.
//!
//! prost writes a nested message as its length, then its fields, and gets
//! that length by walking the message; a parent's length walks every child
//! again. For a request of `ResourceLogs` → `ScopeLogs` → `LogRecord` that
//! is four walks over every record before its bytes are written (the
//! buffer's capacity, the `ResourceLogs` length, the `ScopeLogs` length,
//! the record's own length) and five over every attribute. This walks each
//! record once for its size,
//! keeps the sizes, and writes the two outer levels itself; the records
//! are written by prost. The bytes are the same as prost's
//! (`encodes_as_prost_does`). In the OTLP pass-through benchmark the
//! repeated walks were about a tenth of the agent's CPU.

use opentelemetry_proto::tonic::logs::v1::{ResourceLogs, ScopeLogs};
use prost::encoding::{encode_key, encode_varint, encoded_len_varint, key_len, WireType};
use prost::Message;

/// The bytes of a length-delimited field `tag` holding `len` bytes.
fn field_len(tag: u32, len: usize) -> usize {
    key_len(tag) + encoded_len_varint(len as u64) + len
}

fn put_head(tag: u32, len: usize, buf: &mut Vec<u8>) {
    encode_key(tag, WireType::LengthDelimited, buf);
    encode_varint(len as u64, buf);
}

/// Field numbers, the same in `ResourceLogs` and `ScopeLogs`.
const RESOURCE_OR_SCOPE: u32 = 1;
const CHILDREN: u32 = 2;
const SCHEMA_URL: u32 = 3;

fn optional_len<M: Message>(message: Option<&M>) -> usize {
    message.map_or(0, |m| field_len(RESOURCE_OR_SCOPE, m.encoded_len()))
}

fn schema_url_len(url: &str) -> usize {
    if url.is_empty() {
        0
    } else {
        field_len(SCHEMA_URL, url.len())
    }
}

fn put_optional<M: Message>(message: Option<&M>, buf: &mut Vec<u8>) {
    if let Some(m) = message {
        put_head(RESOURCE_OR_SCOPE, m.encoded_len(), buf);
        m.encode_raw(buf);
    }
}

fn put_schema_url(url: &str, buf: &mut Vec<u8>) {
    if !url.is_empty() {
        put_head(SCHEMA_URL, url.len(), buf);
        buf.extend_from_slice(url.as_bytes());
    }
}

/// The sizes of every `ResourceLogs`, `ScopeLogs` and `LogRecord` of a
/// request, in the order they are written: each `ResourceLogs`, then for
/// each of its `ScopeLogs` the scope and then its records; and the bytes of
/// field 1 of the service request holding them all.
struct Sizes {
    each: Vec<usize>,
    request_len: usize,
}

impl Sizes {
    fn of(resources: &[ResourceLogs]) -> Sizes {
        let records: usize = resources
            .iter()
            .flat_map(|r| &r.scope_logs)
            .map(|s| s.log_records.len() + 1)
            .sum();
        let mut each = Vec::with_capacity(resources.len() + records);
        let mut request_len = 0;
        for resource in resources {
            let at = each.len();
            each.push(0);
            let mut len =
                optional_len(resource.resource.as_ref()) + schema_url_len(&resource.schema_url);
            for scope in &resource.scope_logs {
                len += field_len(CHILDREN, scope_size(scope, &mut each));
            }
            each[at] = len;
            request_len += field_len(1, len);
        }
        Sizes { each, request_len }
    }
}

/// Pushes the scope's size, then its records' sizes; returns the scope's.
fn scope_size(scope: &ScopeLogs, sizes: &mut Vec<usize>) -> usize {
    let at = sizes.len();
    sizes.push(0);
    let mut len = optional_len(scope.scope.as_ref()) + schema_url_len(&scope.schema_url);
    for record in &scope.log_records {
        let record_len = record.encoded_len();
        sizes.push(record_len);
        len += field_len(CHILDREN, record_len);
    }
    sizes[at] = len;
    len
}

/// `head`, then `resources` as field 1 of `ExportLogsServiceRequest`
/// (`resource_logs`): the same bytes as prost's
/// `message::encode(1, r, buf)` for each, in a buffer of the exact size.
pub fn encode_resource_logs(head: &[u8], resources: &[ResourceLogs]) -> Vec<u8> {
    let sizes = Sizes::of(resources);
    let mut buf = Vec::with_capacity(head.len() + sizes.request_len);
    buf.extend_from_slice(head);
    let mut sizes = sizes.each.into_iter();
    let mut next = || sizes.next().unwrap_or_default();
    for resource in resources {
        put_head(1, next(), &mut buf);
        put_optional(resource.resource.as_ref(), &mut buf);
        for scope in &resource.scope_logs {
            put_head(CHILDREN, next(), &mut buf);
            put_optional(scope.scope.as_ref(), &mut buf);
            for record in &scope.log_records {
                put_head(CHILDREN, next(), &mut buf);
                record.encode_raw(&mut buf);
            }
            put_schema_url(&scope.schema_url, &mut buf);
        }
        put_schema_url(&resource.schema_url, &mut buf);
    }
    buf
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{
        any_value, AnyValue, InstrumentationScope, KeyValue,
    };
    use opentelemetry_proto::tonic::logs::v1::LogRecord;
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    fn kv(key: &str, value: any_value::Value) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue { value: Some(value) }),
            ..Default::default()
        }
    }

    fn record(rng: &mut StdRng) -> LogRecord {
        // Bodies past 127 and 16,383 bytes give two- and three-byte lengths.
        let body_len = [0, 5, 200, 20_000][rng.random_range(0..4)];
        LogRecord {
            time_unix_nano: rng.random(),
            severity_number: rng.random_range(0..25),
            severity_text: if rng.random() {
                "WARN".into()
            } else {
                String::new()
            },
            body: rng.random::<bool>().then(|| AnyValue {
                value: Some(any_value::Value::StringValue("b".repeat(body_len))),
            }),
            attributes: (0..rng.random_range(0..4))
                .map(|i| kv(&format!("k{i}"), any_value::Value::IntValue(rng.random())))
                .collect(),
            trace_id: if rng.random() {
                vec![1; 16]
            } else {
                Vec::new()
            },
            ..Default::default()
        }
    }

    fn resources(rng: &mut StdRng) -> Vec<ResourceLogs> {
        (0..rng.random_range(0..4))
            .map(|_| ResourceLogs {
                resource: rng.random::<bool>().then(|| Resource {
                    attributes: vec![kv(
                        "service.name",
                        any_value::Value::StringValue("s".into()),
                    )],
                    ..Default::default()
                }),
                scope_logs: (0..rng.random_range(0..4))
                    .map(|_| ScopeLogs {
                        scope: rng.random::<bool>().then(|| InstrumentationScope {
                            name: "scope".into(),
                            ..Default::default()
                        }),
                        log_records: (0..rng.random_range(0..300)).map(|_| record(rng)).collect(),
                        schema_url: if rng.random() {
                            "https://opentelemetry.io/schemas/1.30.0".into()
                        } else {
                            String::new()
                        },
                    })
                    .collect(),
                schema_url: if rng.random() {
                    "https://example.com/s".into()
                } else {
                    String::new()
                },
            })
            .collect()
    }

    #[test]
    fn encodes_as_prost_does() {
        let mut rng = StdRng::seed_from_u64(17);
        for case in 0..200 {
            let resource_logs = resources(&mut rng);
            let ours = encode_resource_logs(&[], &resource_logs);
            let request = ExportLogsServiceRequest { resource_logs };
            assert!(
                ours == request.encode_to_vec(),
                "case {case}: the bytes differ from prost's"
            );
        }
    }

    #[test]
    fn reserves_exactly_what_it_writes() {
        let mut rng = StdRng::seed_from_u64(3);
        for _ in 0..50 {
            let resource_logs = resources(&mut rng);
            let sizes = Sizes::of(&resource_logs);
            let ours = encode_resource_logs(b"head", &resource_logs);
            assert_eq!(4 + sizes.request_len, ours.len());
            assert_eq!(ours.capacity(), ours.len());
            assert!(ours.starts_with(b"head"));
        }
    }

    #[test]
    fn nothing_to_encode_is_no_bytes() {
        assert!(encode_resource_logs(&[], &[]).is_empty());
        // An empty resource is still a (zero-length) element, an empty
        // `Resource` a zero-length field.
        assert_eq!(
            encode_resource_logs(&[], &[ResourceLogs::default()]),
            vec![0x0a, 0x00]
        );
        let empty_resource = ResourceLogs {
            resource: Some(Resource::default()),
            ..Default::default()
        };
        assert_eq!(
            encode_resource_logs(&[], &[empty_resource]),
            vec![0x0a, 0x02, 0x0a, 0x00]
        );
    }
}
