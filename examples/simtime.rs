fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .map(|s| s.parse().unwrap())
        .unwrap_or(100_000_000);
    let p = qkd_distill::sim::link::LinkParams::default();
    let t = std::time::Instant::now();
    let s = qkd_distill::sim::simulate_decoy_bb84(
        &p,
        n,
        7,
        std::path::Path::new("/tmp/simtest"),
        true,
        &qkd_distill::progress::NoProgress,
    )
    .unwrap();
    println!("{:?}", t.elapsed());
    println!("{}", serde_json::to_string_pretty(&s.expected).unwrap());
    println!("{:?}", s.counts);
}
