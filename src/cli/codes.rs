//! `qkd codes`: the built-in LDPC codes and the alist interchange format.

use super::output::{print_json, thousands};
use clap::{Args, Subcommand};
use qkd_distill::error::{ConfigError, Error, Result};
use qkd_distill::error_correction::ldpc::code::{ParityCheckMatrix, QcCode, Z};
use qkd_distill::error_correction::ldpc::construction::count_four_cycles;
use qkd_distill::error_correction::ldpc::{LdpcCode, catalog};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct CodesArgs {
    #[command(subcommand)]
    pub command: CodesCommand,
}

#[derive(Subcommand)]
pub enum CodesCommand {
    /// List the built-in codes.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show the structure of a built-in code (by name) or of an .alist / .qc file.
    Inspect {
        /// Code name or file.
        code: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write a built-in code as alist (expanded parity-check matrix) or in the QC text format.
    Export {
        /// Code name.
        code: String,
        /// alist or qc.
        #[arg(long, default_value = "alist")]
        format: String,
        /// Output file.
        #[arg(long)]
        out: PathBuf,
        /// Replace an existing output file.
        #[arg(long)]
        force: bool,
    },
    /// Read an .alist or .qc file, validate it and, if it is quasi-cyclic with Z = 64, write it in
    /// the QC text format.
    Import {
        /// Input file.
        input: PathBuf,
        /// Output .qc file (only for quasi-cyclic matrices).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Name for the imported code.
        #[arg(long, default_value = "imported")]
        name: String,
        /// Replace an existing output file.
        #[arg(long)]
        force: bool,
    },
    /// Rebuild every built-in code (the files under data/codes) from its construction.
    Generate {
        /// Directory for the .qc files.
        #[arg(long)]
        out_dir: PathBuf,
        /// Replace existing .qc files there.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Serialize)]
struct CodeInfo {
    name: String,
    n: usize,
    m: usize,
    rate: f64,
    edges: usize,
    lifting: usize,
    max_punctured: usize,
    variable_degrees: BTreeMap<usize, usize>,
    check_degrees: BTreeMap<usize, usize>,
    four_cycles: Option<usize>,
    provenance: String,
}

fn info(
    h: &ParityCheckMatrix,
    name: &str,
    max_punctured: usize,
    provenance: &str,
    cycles: bool,
) -> CodeInfo {
    let mut vd = BTreeMap::new();
    for c in 0..h.n() {
        *vd.entry(h.col(c).len()).or_insert(0) += 1;
    }
    let mut cd = BTreeMap::new();
    for r in 0..h.m() {
        *cd.entry(h.row(r).len()).or_insert(0) += 1;
    }
    CodeInfo {
        name: name.into(),
        n: h.n(),
        m: h.m(),
        rate: 1.0 - h.m() as f64 / h.n() as f64,
        edges: h.edges(),
        lifting: Z,
        max_punctured,
        variable_degrees: vd,
        check_degrees: cd,
        four_cycles: cycles.then(|| count_four_cycles(h)),
        provenance: provenance.into(),
    }
}

fn load(spec: &str) -> Result<(ParityCheckMatrix, String, usize, String)> {
    if let Some(c) = catalog::by_name(spec) {
        return Ok((
            c.code.expand(),
            c.code.name.clone(),
            c.pattern.max_punctured(),
            c.code.provenance.clone(),
        ));
    }
    let path = Path::new(spec);
    if !path.exists() {
        return Err(ConfigError::invalid(
            "code",
            format!("`{spec}` is neither a built-in code (see `qkd codes list`) nor a file"),
        )
        .into());
    }
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    if text.lines().any(|l| l.trim_start().starts_with("qc ")) {
        let qc = QcCode::from_text(&text, path)?;
        let c = LdpcCode::new(qc);
        Ok((
            c.code.expand(),
            c.code.name.clone(),
            c.pattern.max_punctured(),
            c.code.provenance.clone(),
        ))
    } else {
        let h = ParityCheckMatrix::from_alist(&text, path)?;
        Ok((h, path.display().to_string(), 0, "imported alist".into()))
    }
}

/// Recover the QC structure of an expanded matrix with lifting Z, if it has one.
fn to_qc(h: &ParityCheckMatrix, name: &str) -> Option<QcCode> {
    if !h.n().is_multiple_of(Z) || !h.m().is_multiple_of(Z) {
        return None;
    }
    let (nb, mb) = (h.n() / Z, h.m() / Z);
    let mut rows = Vec::with_capacity(mb);
    for br in 0..mb {
        // Row 0 of the block row fixes the shifts; every other row must follow the circulant.
        let mut entries: Vec<(u32, u8)> = h
            .row(br * Z)
            .iter()
            .map(|&c| ((c as usize / Z) as u32, (c as usize % Z) as u8))
            .collect();
        entries.sort_unstable();
        if entries.windows(2).any(|w| w[0].0 == w[1].0) {
            return None;
        }
        for t in 0..Z {
            let mut expect: Vec<u32> = entries
                .iter()
                .map(|&(c, s)| (c as usize * Z + (t + s as usize) % Z) as u32)
                .collect();
            expect.sort_unstable();
            if h.row(br * Z + t) != expect.as_slice() {
                return None;
            }
        }
        rows.push(entries);
    }
    Some(QcCode {
        name: name.into(),
        nb,
        mb,
        rows,
        provenance: "imported".into(),
    })
}

pub fn run(a: CodesArgs) -> Result<u8> {
    match a.command {
        CodesCommand::List { json } => {
            let list: Vec<CodeInfo> = catalog::all()
                .iter()
                .map(|c| {
                    let mut i = info(
                        &c.code.expand(),
                        &c.code.name,
                        c.pattern.max_punctured(),
                        &c.code.provenance,
                        false,
                    );
                    i.variable_degrees.clear();
                    i.check_degrees.clear();
                    i
                })
                .collect();
            if json {
                print_json(&list);
            } else {
                println!(
                    "{:<20} {:>8} {:>7} {:>6} {:>9} {:>10}",
                    "name", "n", "m", "rate", "edges", "max punct"
                );
                for i in list {
                    println!(
                        "{:<20} {:>8} {:>7} {:>6.3} {:>9} {:>10}",
                        i.name,
                        i.n,
                        i.m,
                        i.rate,
                        thousands(i.edges as u64),
                        i.max_punctured
                    );
                }
            }
        }
        CodesCommand::Inspect { code, json } => {
            let (h, name, punct, prov) = load(&code)?;
            let i = info(&h, &name, punct, &prov, true);
            if json {
                print_json(&i);
            } else {
                println!(
                    "{}: n = {}, m = {}, rate {:.4}, {} edges",
                    i.name,
                    i.n,
                    i.m,
                    i.rate,
                    thousands(i.edges as u64)
                );
                println!("  variable degrees {:?}", i.variable_degrees);
                println!("  check degrees    {:?}", i.check_degrees);
                println!("  4-cycles         {}", i.four_cycles.unwrap_or(0));
                println!("  puncturable      {} (untainted)", i.max_punctured);
                println!("  provenance       {}", i.provenance);
            }
        }
        CodesCommand::Export {
            code,
            format,
            out,
            force,
        } => {
            qkd_distill::io::OutputPlan::new(force)
                .output(&out, "--out")
                .check()?;
            let c = catalog::by_name(&code).ok_or_else(|| {
                ConfigError::invalid("code", format!("no built-in code `{code}`"))
            })?;
            let text = match format.as_str() {
                "alist" => c.code.expand().to_alist(),
                "qc" => c.code.to_text(),
                other => {
                    return Err(
                        ConfigError::invalid("format", format!("`{other}` (alist, qc)")).into(),
                    );
                }
            };
            qkd_distill::io::write_atomic(&out, text.as_bytes(), false)?;
            println!("wrote {} ({format})", out.display());
        }
        CodesCommand::Import {
            input,
            out,
            name,
            force,
        } => {
            qkd_distill::io::OutputPlan::new(force)
                .input(&input)
                .output_opt(out.as_deref(), "--out")
                .check()?;
            let (h, _, _, _) = load(input.to_str().unwrap_or_default())?;
            println!(
                "{}: valid parity-check matrix, n = {}, m = {}, {} edges",
                input.display(),
                h.n(),
                h.m(),
                h.edges()
            );
            match (to_qc(&h, &name), out) {
                (Some(qc), Some(out)) => {
                    qkd_distill::io::write_atomic(&out, qc.to_text().as_bytes(), false)?;
                    println!("quasi-cyclic with Z = {Z}: wrote {}", out.display());
                }
                (Some(_), None) => {
                    println!("quasi-cyclic with Z = {Z} (use --out FILE to write it as .qc)")
                }
                (None, _) => println!(
                    "not quasi-cyclic with Z = {Z}: usable with the reference decoder only"
                ),
            }
        }
        CodesCommand::Generate { out_dir, force } => {
            let codes = catalog::generate();
            let mut plan = qkd_distill::io::OutputPlan::new(force);
            let paths: Vec<PathBuf> = codes
                .iter()
                .map(|c| out_dir.join(format!("{}.qc", c.name)))
                .collect();
            for p in &paths {
                plan.output(p, "a code file");
            }
            plan.check()?;
            std::fs::create_dir_all(&out_dir).map_err(|e| Error::io(&out_dir, e))?;
            for (c, p) in codes.iter().zip(&paths) {
                qkd_distill::io::write_atomic(p, c.to_text().as_bytes(), false)?;
                println!("{}", p.display());
            }
        }
    }
    Ok(0)
}
