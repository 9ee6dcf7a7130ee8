//! placeholder
pub mod images;
pub mod probes;
pub mod proxy;
pub mod volumes;
