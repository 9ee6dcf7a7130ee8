//! `pgpool.conf`: its syntax (values and quoting), the parser of user-supplied override files
//! and the writer of the file the operator generates, side by side.

mod overrides;
mod parse;
mod syntax;
mod write;

#[cfg(test)]
mod tests;

pub use overrides::{check_override, check_overrides, render_problem};
pub use parse::parse_pgpool_conf;
pub use syntax::Value;
pub(crate) use write::render_pgpool_conf;
