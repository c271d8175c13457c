//! Op benchmarks (divan). OWNER: conv helper.
fn main() {
    divan::main();
}
