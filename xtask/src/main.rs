//! Host tool (placeholder).
fn main() {}
