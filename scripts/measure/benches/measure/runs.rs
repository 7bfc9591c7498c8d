//! Where each table comes from. Every table file ends with the commit and
//! the run it was measured in, and `runs.csv` keeps one row per
//! measurement, so a partial run (`--only`) leaves the other tables marked
//! as older instead of passing them off as its own. `machine.md` shows the
//! machine and, measurement by measurement, the runs.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::output::{self, command_line};

/// What every measurement needs to know about the run it is part of.
pub struct Context {
    /// Where the data, tables and plots go.
    pub out: PathBuf,
    /// Where `scripts/bench` built the release binaries.
    pub bins: PathBuf,
    /// A reduced run (`--quick`): fewer repeats, to try the tool.
    pub quick: bool,
    /// The commit measured, taken before anything was written.
    pub commit: String,
    /// When this run of the tool started (UTC): it names the run.
    pub started: String,
}

impl Context {
    pub fn new(out: PathBuf, bins: PathBuf, quick: bool) -> Context {
        Context {
            out,
            bins,
            quick,
            commit: output::commit(),
            started: command_line("date", &["-u", "+%Y-%m-%d %H:%M"]),
        }
    }

    /// The line under each table that says which run it is from.
    pub fn stamp(&self) -> String {
        let reduced = if self.quick {
            " A reduced run (`--quick`): too few repeats to quote."
        } else {
            ""
        };
        format!(
            "<small>Measured at commit `{}`, in the run of {} UTC.{reduced}</small>\n",
            self.commit, self.started
        )
    }

    /// Writes a Markdown table, stamped with this run.
    pub fn write_table(&self, name: &str, text: &str) -> io::Result<()> {
        output::write_table(&self.out, name, &format!("{text}\n{}", self.stamp()))
    }

    pub fn write_csv(&self, name: &str, header: &str, rows: &[String]) -> io::Result<()> {
        output::write_csv(&self.out, name, header, rows)
    }
}

/// One measurement of this run, and how busy the machine was around it.
pub struct Record {
    pub measurement: String,
    pub load_at_start: f64,
    pub load_at_end: f64,
}

const HEADER: &str = "measurement,commit,started,quick,load_at_start,load_at_end";

/// Updates `runs.csv` with this run's measurements, keeping the rows of
/// those not run this time, and writes `machine.md` from it.
pub fn write(ctx: &Context, records: &[Record]) -> io::Result<()> {
    let mut rows: Vec<String> = fs::read_to_string(ctx.out.join("runs.csv"))
        .unwrap_or_default()
        .lines()
        .skip(1)
        .filter(|line| {
            let name = line.split(',').next().unwrap_or_default();
            !records.iter().any(|r| r.measurement == name)
        })
        .map(str::to_string)
        .collect();
    rows.extend(records.iter().map(|r| {
        format!(
            "{},{},{},{},{:.2},{:.2}",
            r.measurement, ctx.commit, ctx.started, ctx.quick, r.load_at_start, r.load_at_end
        )
    }));
    rows.sort_by_key(|row| {
        let name = row.split(',').next().unwrap_or_default();
        crate::ALL.iter().position(|n| *n == name)
    });
    ctx.write_csv("runs.csv", HEADER, &rows)?;
    write_machine(&ctx.out, &rows)
}

fn write_machine(dir: &Path, runs: &[String]) -> io::Result<()> {
    let mut text = output::table(&["this machine", ""], &machine());
    text.push('\n');
    let fields: Vec<Vec<&str>> = runs.iter().map(|row| row.split(',').collect()).collect();
    let table_rows: Vec<Vec<String>> = crate::ALL
        .iter()
        .map(|name| match fields.iter().find(|f| f[0] == *name) {
            Some(f) => {
                let kind = if f[3] == "true" { " (reduced)" } else { "" };
                vec![
                    f[0].to_string(),
                    format!("`{}`", f[1]),
                    format!("{}{kind}", f[2]),
                    format!("{}, {}", f[4], f[5]),
                ]
            }
            None => vec![
                name.to_string(),
                "not recorded".to_string(),
                "an older run: see the history of its table".to_string(),
                String::new(),
            ],
        })
        .collect();
    text.push_str(&output::table(
        &[
            "measurement",
            "commit",
            "run (UTC)",
            "load average, 1 min: at start, at end",
        ],
        &table_rows,
    ));
    let mut distinct: Vec<(&str, &str)> = fields.iter().map(|f| (f[1], f[2])).collect();
    distinct.sort();
    distinct.dedup();
    let all_measured = crate::ALL
        .iter()
        .all(|name| fields.iter().any(|f| f[0] == *name));
    let reduced = fields.iter().any(|f| f[3] == "true");
    text.push('\n');
    text.push_str(if distinct.len() == 1 && all_measured && !reduced {
        "Every table on this page comes from this one run.\n"
    } else if reduced {
        "**Not the book's numbers**: some tables come from a reduced run (`--quick`), \
         which has too few repeats to decide anything. Each table names its run.\n"
    } else {
        "**The tables come from more than one run**, after a partial one (`--only`): \
         each table names its own, and no ratio compares numbers from two runs.\n"
    });
    output::write_table(dir, "machine.md", &text)
}

/// The machine this run is on.
fn machine() -> Vec<Vec<String>> {
    let read = |path: &str| fs::read_to_string(path).unwrap_or_default();
    let cpu = read("/proc/cpuinfo")
        .lines()
        .find(|line| line.starts_with("model name"))
        .and_then(|line| line.split(':').nth(1))
        .map_or("unknown CPU".to_string(), |name| name.trim().to_string());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let memory = read("/proc/meminfo")
        .lines()
        .next()
        .and_then(|line| line.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or("unknown".to_string(), |kib| format!("{} GiB", kib >> 20));
    let srso = read("/sys/devices/system/cpu/vulnerabilities/spec_rstack_overflow");
    vec![
        vec!["CPU".to_string(), format!("{cpu}, {cores} cores")],
        vec!["memory".to_string(), memory],
        vec![
            "kernel".to_string(),
            format!("Linux {}", read("/proc/sys/kernel/osrelease").trim()),
        ],
        vec![
            "SRSO mitigation".to_string(),
            if srso.trim().is_empty() {
                "not reported".to_string()
            } else {
                srso.trim().to_string()
            },
        ],
        vec![
            "compiler".to_string(),
            command_line("rustc", &["--version"]),
        ],
    ]
}
