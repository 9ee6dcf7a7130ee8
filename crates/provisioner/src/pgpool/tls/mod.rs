//! TLS of a Pgpool: the built-in CA ([`ca`]), the certificates a Pgpool needs
//! ([`certificates`]).

pub mod ca;
