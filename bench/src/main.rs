//! Side-by-side benchmarks: each runs Causeway and its peer (direct TCP, stunnel4,
//! nsd/unbound, etcd) in the same run on the same machine and prints ratios.

fn main() {
    eprintln!("no benchmark is built yet; see BENCHMARKS.md");
    std::process::exit(2);
}
