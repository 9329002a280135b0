use std::sync::Arc;
fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .map(|s| s.parse().unwrap())
        .unwrap_or(100_000_000);
    let attack = std::env::args().nth(2).unwrap_or("none".into());
    let mut p = qkd_distill::sim::link::LinkParams::default();
    p.attack = qkd_distill::sim::link::Attack::parse(&attack).unwrap();
    let t = std::time::Instant::now();
    let dir = std::path::Path::new("/tmp/e2e");
    let _ = std::fs::remove_dir_all(dir);
    let s = qkd_distill::sim::simulate_decoy_bb84(
        &p,
        n,
        7,
        dir,
        true,
        &qkd_distill::progress::NoProgress,
    )
    .unwrap();
    println!(
        "sim {:?} expected qber {:.4}",
        t.elapsed(),
        s.expected.qber_key_overall
    );
    let opts = qkd_distill::engine::DistillOptions {
        settings: Default::default(),
        out_dir: dir.join("keys"),
        overwrite: false,
        deterministic_seed: None,
        kernels: qkd_distill::kernels::Kernels::detect(),
    };
    let t = std::time::Instant::now();
    let r = qkd_distill::engine::distill(
        &dir.join("alice.qpl"),
        &dir.join("bob.qdl"),
        &opts,
        Arc::new(qkd_distill::progress::NoProgress),
    );
    println!("distill {:?}", t.elapsed());
    match r {
        Ok(r) => {
            let mut r2 = r.clone();
            r2.blocks.truncate(1);
            println!("{}", serde_json::to_string_pretty(&r2).unwrap());
        }
        Err(e) => println!("error: {e}"),
    }
}
