//! The `epsim` command-line tool.
fn main() {
    println!("epsim");
}
