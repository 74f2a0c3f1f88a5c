//! Receivers: where data enters. One module per receiver type; each registers
//! its factory in `crate::components`.

pub mod filelog;
pub mod kmsg;
pub mod memory;
pub mod oom;
pub mod otlp;

pub use crate::component::ReceiverOutputs;
