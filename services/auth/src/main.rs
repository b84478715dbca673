//! `tucdesk-auth`: the auth service binary (being written).
fn main() {}
