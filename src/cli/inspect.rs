//! `qkd inspect FILE`: header, metadata and statistics of a native file; verifies every block.

use super::output::{print_json, thousands};
use clap::Args;
use qkd_distill::error::{Error, FormatError, Result};
use qkd_distill::io::header::FileKind;
use qkd_distill::io::{DetectionLog, PrepLog};
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct InspectArgs {
    /// A .qdl detection log or .qpl preparation log.
    pub file: PathBuf,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct HeaderInfo {
    kind: &'static str,
    version: String,
    flags: u32,
    tick_seconds: f64,
    tick: String,
    run_id: String,
    origin_unix_ns: Option<i64>,
    file_bytes: u64,
    memory_mapped: bool,
    blocks: usize,
    checksums: &'static str,
    metadata: serde_json::Value,
}

#[derive(Serialize)]
struct DetectionStats {
    records: u64,
    first_time: Option<i64>,
    last_time: Option<i64>,
    per_channel: BTreeMap<u16, u64>,
    per_kind: BTreeMap<String, u64>,
    multi_click_records: u64,
}

#[derive(Serialize)]
struct PrepStats {
    slots: u64,
    /// [basis Z, basis X] × [signal, decoy, weak decoy] slot counts.
    basis_intensity: [[u64; 3]; 2],
}

#[derive(Serialize)]
struct InspectReport {
    file: PathBuf,
    header: HeaderInfo,
    #[serde(skip_serializing_if = "Option::is_none")]
    detections: Option<DetectionStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    preparation: Option<PrepStats>,
}

fn sniff(path: &Path) -> Result<FileKind> {
    let mut magic = [0u8; 8];
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let n = f.read(&mut magic).map_err(|e| Error::io(path, e))?;
    for kind in [FileKind::DetectionLog, FileKind::PrepLog] {
        if n == 8 && magic == kind.magic() {
            return Ok(kind);
        }
    }
    Err(FormatError::BadMagic {
        path: path.to_path_buf(),
        offset: 0,
        expected: "a .qdl (\\x89QDL) or .qpl (\\x89QPL) magic".into(),
        kind: "native qkd-distill",
    }
    .into())
}

fn header_info(
    kind: FileKind,
    h: &qkd_distill::io::FileHeader,
    path: &Path,
    mapped: bool,
    blocks: usize,
) -> HeaderInfo {
    HeaderInfo {
        kind: kind.name(),
        version: format!("{}.{}", h.version.0, h.version.1),
        flags: h.flags,
        tick_seconds: h.tick_seconds(),
        tick: format!("{}/{} s", h.tick_num, h.tick_den),
        run_id: h.run_id.to_string(),
        origin_unix_ns: (h.origin_unix_ns != i64::MIN).then_some(h.origin_unix_ns),
        file_bytes: std::fs::metadata(path).map(|m| m.len()).unwrap_or(0),
        memory_mapped: mapped,
        blocks,
        checksums: "all blocks verified",
        metadata: serde_json::from_str(&h.metadata_json).unwrap_or(serde_json::Value::Null),
    }
}

pub fn run(a: InspectArgs) -> Result<u8> {
    let kind = sniff(&a.file)?;
    let report = match kind {
        FileKind::DetectionLog => {
            let log = DetectionLog::open(&a.file)?;
            let mut s = DetectionStats {
                records: 0,
                first_time: None,
                last_time: None,
                per_channel: BTreeMap::new(),
                per_kind: BTreeMap::new(),
                multi_click_records: 0,
            };
            for i in 0..log.blocks().len() {
                for r in log.block(i)?.iter() {
                    s.records += 1;
                    s.first_time = Some(s.first_time.map_or(r.time, |t| t.min(r.time)));
                    s.last_time = Some(s.last_time.map_or(r.time, |t| t.max(r.time)));
                    *s.per_channel.entry(r.channel).or_default() += 1;
                    let k = serde_json::to_value(r.kind)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default();
                    *s.per_kind.entry(k).or_default() += 1;
                    s.multi_click_records += u64::from(r.flags & 1);
                }
            }
            InspectReport {
                file: a.file.clone(),
                header: header_info(
                    kind,
                    log.header(),
                    &a.file,
                    log.is_mapped(),
                    log.blocks().len(),
                ),
                detections: Some(s),
                preparation: None,
            }
        }
        FileKind::PrepLog => {
            let log = PrepLog::open(&a.file)?;
            let mut c = [[0u64; 3]; 2];
            for i in 0..log.blocks().len() {
                let b = log.block(i)?.class_counts();
                for (x, y) in c.iter_mut().flatten().zip(b.iter().flatten()) {
                    *x += y;
                }
            }
            InspectReport {
                file: a.file.clone(),
                header: header_info(
                    kind,
                    log.header(),
                    &a.file,
                    log.is_mapped(),
                    log.blocks().len(),
                ),
                detections: None,
                preparation: Some(PrepStats {
                    slots: log.total_slots(),
                    basis_intensity: c,
                }),
            }
        }
    };
    if a.json {
        print_json(&report);
        return Ok(0);
    }
    let h = &report.header;
    println!("{}: {} v{}", report.file.display(), h.kind, h.version);
    println!("  run id            {}", h.run_id);
    println!("  tick              {} ({:e} s)", h.tick, h.tick_seconds);
    println!("  flags             {:#06x}", h.flags);
    println!(
        "  size              {} bytes in {} blocks ({})",
        thousands(h.file_bytes),
        h.blocks,
        h.checksums
    );
    if let Some(d) = &report.detections {
        println!(
            "  records           {} ({} in multi-clicks)",
            thousands(d.records),
            thousands(d.multi_click_records)
        );
        if let (Some(a), Some(b)) = (d.first_time, d.last_time) {
            println!("  time span         {a} .. {b} ticks");
        }
        for (ch, n) in &d.per_channel {
            println!("  channel {ch:<9} {}", thousands(*n));
        }
        for (k, n) in &d.per_kind {
            println!("  kind {k:<12} {}", thousands(*n));
        }
    }
    if let Some(p) = &report.preparation {
        println!("  slots             {}", thousands(p.slots));
        for (b, name) in ["Z", "X"].iter().enumerate() {
            let c = p.basis_intensity[b];
            println!(
                "  basis {name}           signal {}, decoy {}, weak decoy {}",
                thousands(c[0]),
                thousands(c[1]),
                thousands(c[2])
            );
        }
    }
    println!(
        "  metadata          {}",
        serde_json::to_string(&h.metadata).unwrap_or_default()
    );
    Ok(0)
}
