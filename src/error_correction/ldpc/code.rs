//! LDPC codes as data: quasi-cyclic codes (a base matrix of circulant shifts lifted by
//! `Z = 64`) and their expansion into a sparse parity-check matrix, with the alist
//! interchange format (MacKay, <http://www.inference.org.uk/mackay/codes/alist.html>) and a
//! compact text format for the QC description.
//!
//! Circulant convention: base entry (r, c) with shift s expands to the Z×Z permutation matrix
//! with ones at (r·Z + t, c·Z + (t + s) mod Z), t in 0..Z; i.e. check row t of block row r
//! involves variable (t + s) mod Z of column block c.

use crate::error::{ConfigError, FormatError, Result};
use std::fmt::Write as _;
use std::path::Path;

/// Lifting size of every QC code in the engine (one AVX-512 register of i8 lanes).
pub const Z: usize = 64;

/// A sparse binary parity-check matrix with u32 indices, in both row and column orientation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParityCheckMatrix {
    n: usize,
    m: usize,
    row_ptr: Vec<u32>,
    row_cols: Vec<u32>,
    col_ptr: Vec<u32>,
    col_rows: Vec<u32>,
}

impl ParityCheckMatrix {
    /// Build from the column indices of every row (duplicates are an error).
    pub fn from_rows(n: usize, rows: &[Vec<u32>]) -> std::result::Result<Self, ConfigError> {
        let m = rows.len();
        let mut row_ptr = Vec::with_capacity(m + 1);
        let mut row_cols = Vec::new();
        let mut col_deg = vec![0u32; n];
        row_ptr.push(0);
        for (r, cols) in rows.iter().enumerate() {
            let mut sorted = cols.clone();
            sorted.sort_unstable();
            if sorted.windows(2).any(|w| w[0] == w[1]) {
                return Err(ConfigError::invalid(
                    "parity-check matrix",
                    format!("row {r} repeats a column"),
                ));
            }
            for &c in &sorted {
                if c as usize >= n {
                    return Err(ConfigError::invalid(
                        "parity-check matrix",
                        format!("row {r}: column {c} ≥ n = {n}"),
                    ));
                }
                col_deg[c as usize] += 1;
            }
            row_cols.extend_from_slice(&sorted);
            row_ptr.push(row_cols.len() as u32);
        }
        let mut col_ptr = vec![0u32; n + 1];
        for c in 0..n {
            col_ptr[c + 1] = col_ptr[c] + col_deg[c];
        }
        let mut fill = col_ptr.clone();
        let mut col_rows = vec![0u32; row_cols.len()];
        for r in 0..m {
            for &c in &row_cols[row_ptr[r] as usize..row_ptr[r + 1] as usize] {
                col_rows[fill[c as usize] as usize] = r as u32;
                fill[c as usize] += 1;
            }
        }
        Ok(ParityCheckMatrix {
            n,
            m,
            row_ptr,
            row_cols,
            col_ptr,
            col_rows,
        })
    }

    /// Code length (columns).
    pub fn n(&self) -> usize {
        self.n
    }
    /// Checks (rows).
    pub fn m(&self) -> usize {
        self.m
    }
    /// Number of ones.
    pub fn edges(&self) -> usize {
        self.row_cols.len()
    }
    /// Columns of row `r`.
    pub fn row(&self, r: usize) -> &[u32] {
        &self.row_cols[self.row_ptr[r] as usize..self.row_ptr[r + 1] as usize]
    }
    /// Rows of column `c`.
    pub fn col(&self, c: usize) -> &[u32] {
        &self.col_rows[self.col_ptr[c] as usize..self.col_ptr[c + 1] as usize]
    }

    /// Syndrome H·x of a bit vector (bit i = x_i).
    pub fn syndrome(&self, x: &crate::bits::BitVec) -> crate::bits::BitVec {
        assert_eq!(x.len(), self.n);
        let mut s = crate::bits::BitVec::zeros(self.m);
        for r in 0..self.m {
            let p = self
                .row(r)
                .iter()
                .fold(false, |acc, &c| acc ^ x.get(c as usize));
            s.set(r, p);
        }
        s
    }

    /// The matrix in alist format.
    pub fn to_alist(&self) -> String {
        let mut s = String::new();
        let max_col = (0..self.n).map(|c| self.col(c).len()).max().unwrap_or(0);
        let max_row = (0..self.m).map(|r| self.row(r).len()).max().unwrap_or(0);
        let _ = writeln!(s, "{} {}", self.n, self.m);
        let _ = writeln!(s, "{max_col} {max_row}");
        let join = |v: Vec<String>| v.join(" ");
        let _ = writeln!(
            s,
            "{}",
            join((0..self.n).map(|c| self.col(c).len().to_string()).collect())
        );
        let _ = writeln!(
            s,
            "{}",
            join((0..self.m).map(|r| self.row(r).len().to_string()).collect())
        );
        for c in 0..self.n {
            let mut v: Vec<String> = self.col(c).iter().map(|r| (r + 1).to_string()).collect();
            v.resize(max_col, "0".into());
            let _ = writeln!(s, "{}", join(v));
        }
        for r in 0..self.m {
            let mut v: Vec<String> = self.row(r).iter().map(|c| (c + 1).to_string()).collect();
            v.resize(max_row, "0".into());
            let _ = writeln!(s, "{}", join(v));
        }
        s
    }

    /// Parse the alist format (zero padding optional); `path` is for error messages.
    pub fn from_alist(text: &str, path: &Path) -> Result<Self> {
        let bad = |line: usize, message: String| -> crate::error::Error {
            FormatError::InvalidField {
                path: path.to_path_buf(),
                offset: line as u64,
                field: "alist line",
                message,
            }
            .into()
        };
        let mut lines = text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty());
        let mut nums = |what: &str| -> Result<(usize, Vec<usize>)> {
            let (i, l) = lines
                .next()
                .ok_or_else(|| bad(0, format!("missing {what}")))?;
            let v = l
                .split_whitespace()
                .map(|t| {
                    t.parse::<usize>()
                        .map_err(|_| bad(i + 1, format!("`{t}` is not a number in {what}")))
                })
                .collect::<Result<Vec<_>>>()?;
            Ok((i + 1, v))
        };
        let (l, nm) = nums("the size line")?;
        let [n, m] = nm[..] else {
            return Err(bad(l, "expected `N M`".into()));
        };
        nums("the max-degree line")?;
        let (l, col_deg) = nums("column degrees")?;
        if col_deg.len() != n {
            return Err(bad(
                l,
                format!("{} column degrees for N = {n}", col_deg.len()),
            ));
        }
        let (l, row_deg) = nums("row degrees")?;
        if row_deg.len() != m {
            return Err(bad(l, format!("{} row degrees for M = {m}", row_deg.len())));
        }
        let mut col_lists = Vec::with_capacity(n);
        for (c, &d) in col_deg.iter().enumerate() {
            let (l, v) = nums("a column list")?;
            let v: Vec<usize> = v.into_iter().filter(|&x| x != 0).collect();
            if v.len() != d || v.iter().any(|&r| r > m) {
                return Err(bad(
                    l,
                    format!(
                        "column {} lists {:?}, expected {d} rows in 1..={m}",
                        c + 1,
                        v
                    ),
                ));
            }
            col_lists.push(v);
        }
        let mut rows: Vec<Vec<u32>> = vec![Vec::new(); m];
        for (r, &d) in row_deg.iter().enumerate() {
            let (l, v) = nums("a row list")?;
            let v: Vec<u32> = v
                .into_iter()
                .filter(|&x| x != 0)
                .map(|c| (c - 1) as u32)
                .collect();
            if v.len() != d || v.iter().any(|&c| c as usize >= n) {
                return Err(bad(
                    l,
                    format!(
                        "row {} lists {} columns, expected {d} in 1..={n}",
                        r + 1,
                        v.len()
                    ),
                ));
            }
            rows[r] = v;
        }
        let h = Self::from_rows(n, &rows).map_err(|e| bad(0, e.to_string()))?;
        // Column lists must agree with the row lists.
        for (c, list) in col_lists.iter().enumerate() {
            let mut a: Vec<u32> = list.iter().map(|&r| (r - 1) as u32).collect();
            a.sort_unstable();
            if a != h.col(c) {
                return Err(bad(
                    0,
                    format!("column {} disagrees with the row lists", c + 1),
                ));
            }
        }
        Ok(h)
    }
}

/// A quasi-cyclic LDPC code: `mb × nb` base matrix of circulant shifts, lifted by [`Z`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QcCode {
    /// Name (e.g. `qc-r0.80-n102400`).
    pub name: String,
    /// Base columns.
    pub nb: usize,
    /// Base rows.
    pub mb: usize,
    /// Per base row: (base column, shift), sorted by column.
    pub rows: Vec<Vec<(u32, u8)>>,
    /// How the code was made (for `codes inspect` and regeneration).
    pub provenance: String,
}

impl QcCode {
    /// Code length n = nb·Z.
    pub fn n(&self) -> usize {
        self.nb * Z
    }
    /// Checks m = mb·Z.
    pub fn m(&self) -> usize {
        self.mb * Z
    }
    /// Design rate 1 − m/n.
    pub fn rate(&self) -> f64 {
        1.0 - self.mb as f64 / self.nb as f64
    }
    /// Base edges.
    pub fn base_edges(&self) -> usize {
        self.rows.iter().map(Vec::len).sum()
    }
    /// Degree of every base column.
    pub fn column_degrees(&self) -> Vec<usize> {
        let mut d = vec![0; self.nb];
        for row in &self.rows {
            for &(c, _) in row {
                d[c as usize] += 1;
            }
        }
        d
    }

    /// The expanded parity-check matrix.
    pub fn expand(&self) -> ParityCheckMatrix {
        let mut rows = Vec::with_capacity(self.m());
        for brow in &self.rows {
            for t in 0..Z {
                rows.push(
                    brow.iter()
                        .map(|&(c, s)| (c as usize * Z + (t + s as usize) % Z) as u32)
                        .collect(),
                );
            }
        }
        ParityCheckMatrix::from_rows(self.n(), &rows)
            .expect("a valid QC code expands to a valid matrix")
    }

    /// The compact text form: header lines, then one line per base row of `col:shift` pairs.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "# qkd-distill quasi-cyclic LDPC code");
        let _ = writeln!(s, "# {}", self.provenance);
        let _ = writeln!(s, "qc {} {} {} {}", self.name, self.nb, self.mb, Z);
        for row in &self.rows {
            let items: Vec<String> = row.iter().map(|(c, sh)| format!("{c}:{sh}")).collect();
            let _ = writeln!(s, "{}", items.join(" "));
        }
        s
    }

    /// Parse [`QcCode::to_text`] output.
    pub fn from_text(text: &str, path: &Path) -> Result<Self> {
        let bad = |line: usize, message: String| -> crate::error::Error {
            FormatError::InvalidField {
                path: path.to_path_buf(),
                offset: line as u64,
                field: "qc code line",
                message,
            }
            .into()
        };
        let mut provenance = String::new();
        let mut header = None;
        let mut rows = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            if let Some(c) = line.strip_prefix('#') {
                if !c.contains("qkd-distill quasi-cyclic") {
                    provenance = c.trim().to_string();
                }
                continue;
            }
            if header.is_none() {
                let t: Vec<&str> = line.split_whitespace().collect();
                if t.len() != 5 || t[0] != "qc" {
                    return Err(bad(i + 1, "expected `qc NAME NB MB Z`".into()));
                }
                let num = |x: &str| {
                    x.parse::<usize>()
                        .map_err(|_| bad(i + 1, format!("`{x}` is not a number")))
                };
                let (nb, mb, z) = (num(t[2])?, num(t[3])?, num(t[4])?);
                if z != Z {
                    return Err(bad(i + 1, format!("lifting size {z}; this build uses {Z}")));
                }
                header = Some((t[1].to_string(), nb, mb));
                continue;
            }
            let (_, nb, _) = header.as_ref().unwrap();
            let mut row = Vec::new();
            for item in line.split_whitespace() {
                let (c, s) = item
                    .split_once(':')
                    .ok_or_else(|| bad(i + 1, format!("`{item}` is not COL:SHIFT")))?;
                let c: u32 = c
                    .parse()
                    .map_err(|_| bad(i + 1, format!("bad column `{c}`")))?;
                let s: u8 = s
                    .parse()
                    .map_err(|_| bad(i + 1, format!("bad shift `{s}`")))?;
                if c as usize >= *nb || s as usize >= Z {
                    return Err(bad(i + 1, format!("entry {c}:{s} out of range")));
                }
                row.push((c, s));
            }
            row.sort_unstable();
            if row.windows(2).any(|w| w[0].0 == w[1].0) {
                return Err(bad(i + 1, "a base row repeats a column".into()));
            }
            rows.push(row);
        }
        let (name, nb, mb) = header.ok_or_else(|| bad(0, "missing `qc` header".into()))?;
        if rows.len() != mb {
            return Err(bad(
                0,
                format!("{} base rows, header says {mb}", rows.len()),
            ));
        }
        Ok(QcCode {
            name,
            nb,
            mb,
            rows,
            provenance,
        })
    }
}
