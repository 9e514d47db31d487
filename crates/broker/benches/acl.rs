//! ACL check benchmark (filled in below).
#![allow(missing_docs)]
fn main() {}
