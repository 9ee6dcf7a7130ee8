pub mod config;
pub mod petset;
