//! What flows between components and how: data, acknowledgements, consumers,
//! and the topology that wires configured components together.

pub mod ack;
pub mod consumer;
pub mod data;
pub mod topology;

pub use ack::{BatchNotifier, BatchStatusReceiver, DeliveryStatus, Finalizer, Finalizers};
pub use consumer::{consume_retrying, ConsumeError, Consumer, DynConsumer, EmptyFanout, Fanout};
pub use data::{Batch, Payload, Signal};
