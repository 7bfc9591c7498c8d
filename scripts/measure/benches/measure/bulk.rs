//! Bulk: what reading a large body costs per MiB, chapter 4 against the
//! tokio client. Both run the default demo with `--endless --workers 1`:
//! five small requests and, beside them, the delay server's endless body,
//! read in 32 KiB reads and checksummed with the same CRC-32 until the
//! requests are done. What the same run without `--endless` costs is
//! subtracted, and the rest is divided by the MiB of endless body read.
//!
//! System calls are counted under `strace -f -c`, once per client: a
//! traced program runs slower, so it reads fewer MiB, but each read is
//! still one call. CPU time is taken without strace, from `wait4`, in
//! pairs of runs in alternating order, and chapter 4 / tokio is the median
//! of the pairs' ratios.

use std::io;

use measure::stats::{Summary, summarize};

use crate::goals::{Goal, Want};
use crate::output::{self, ratio};
use crate::processes::{self, Programs, Server, ServerProcess};
use crate::runs::Context;
use crate::syscalls::{self, KINDS};

const CLIENTS: [&str; 2] = ["d-ready-list", "tokio"];
/// Pairs of CPU runs: the checksum costs both clients the same and is
/// most of the CPU time, so the difference is small, and 15 pairs give a
/// 96% interval from the 4th lowest ratio to the 4th highest.
const PAIRS: usize = 15;
const QUICK_PAIRS: usize = 3;
/// Each run lasts about a second; `measured` kills one after this.
const KILL_AFTER: &str = "60";
/// Issue 17's limits. Chapter 4 reads 128 KiB a turn in 32 KiB reads, so
/// with full reads that is 32 reads and 8 waits per MiB: the limits leave
/// room for short reads.
const MOST_READS_PER_MIB: f64 = 64.0;
const MOST_WAITS_PER_MIB: f64 = 16.0;

fn args(addr: &str, endless: bool) -> Vec<String> {
    let mut args = vec!["--addr".to_string(), addr.to_string()];
    args.extend(["--workers", "1"].map(str::to_string));
    if endless {
        args.push("--endless".to_string());
    }
    args
}

/// The MiB of endless body a run says it read.
fn mib_read(stdout: &str) -> io::Result<f64> {
    stdout
        .lines()
        .find_map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            let at = words.iter().position(|w| *w == "MiB")?;
            words.get(at.checked_sub(1)?)?.parse::<f64>().ok()
        })
        .filter(|mib| *mib > 0.0)
        .ok_or_else(|| io::Error::other(format!("no MiB of endless body in: {stdout:?}")))
}

pub fn run(ctx: &Context) -> io::Result<Vec<Goal>> {
    if !syscalls::strace_installed() {
        eprintln!("bulk: skipped, strace is not installed (apt-get install strace)");
        return Ok(Vec::new());
    }
    let programs = &Programs::find(&ctx.bins)?;
    let scratch = std::env::temp_dir().join(format!("measure-bulk-{}", std::process::id()));
    // System calls per MiB, by client, then by kind.
    let mut per_mib = Vec::new();
    let mut rows = Vec::new();
    for client in CLIENTS {
        let program = syscalls::program(programs, client);
        let traced = |endless| {
            let server = ServerProcess::start(&programs.server, Server::Threads)?;
            syscalls::traced(&program, &args(&server.addr, endless), &scratch)
        };
        let (plain, _) = traced(false)?;
        let (endless, stdout) = traced(true)?;
        let counted = syscalls::by_kind(&endless, &plain, mib_read(&stdout)?);
        for ((kind, _), calls) in KINDS.iter().zip(&counted) {
            rows.push(format!("{client},{kind},{calls:.2}"));
        }
        per_mib.push(counted);
    }
    let _ = std::fs::remove_file(&scratch);
    ctx.write_csv("bulk-syscalls.csv", "client,syscall,per_mib", &rows)?;

    // CPU time per MiB: cpu[client] holds one value per pair.
    let pairs = if ctx.quick { QUICK_PAIRS } else { PAIRS };
    let mut cpu: Vec<Vec<f64>> = vec![Vec::new(); CLIENTS.len()];
    let mut rows = Vec::new();
    for pair in 0..pairs {
        for turn in 0..CLIENTS.len() {
            let index = (pair + turn) % CLIENTS.len();
            let program = syscalls::program(programs, CLIENTS[index]);
            let measured = |endless| {
                let server = ServerProcess::start(&programs.server, Server::Threads)?;
                processes::measured(programs, KILL_AFTER, &program, &args(&server.addr, endless))
            };
            let (stdout, endless) = measured(true)?;
            let (_, plain) = measured(false)?;
            let mib = mib_read(&stdout)?;
            cpu[index].push((endless.cpu_ms() - plain.cpu_ms()) / mib);
            for (is_endless, report, mib) in [(true, &endless, mib), (false, &plain, 0.0)] {
                rows.push(format!(
                    "{},{},{is_endless},{mib},{:.1}",
                    CLIENTS[index],
                    pair + 1,
                    report.cpu_ms()
                ));
            }
        }
    }
    ctx.write_csv("bulk-cpu.csv", "client,pair,endless,mib,cpu_ms", &rows)?;
    let ratios: Vec<f64> = cpu[0].iter().zip(&cpu[1]).map(|(a, b)| a / b).collect();
    let paired = summarize(&ratios);

    let text = table(&per_mib, &cpu, &paired);
    ctx.write_table("bulk.md", &text)?;
    print!("{text}");
    let chapter4 = &per_mib[0];
    let kind = |name: &str| KINDS.iter().position(|(k, _)| k.starts_with(name));
    let reads = kind("recvfrom").map_or(f64::NAN, |k| chapter4[k]);
    let waits = kind("epoll_wait").map_or(f64::NAN, |k| chapter4[k]);
    Ok(vec![
        Goal::interval(
            "syscalls",
            "syscalls: bulk body: CPU time per MiB; chapter 4 / tokio".into(),
            Want::AtMost(1.0),
            &paired,
        ),
        Goal::count(
            "syscalls",
            "syscalls: bulk body: chapter 4 recvfrom per MiB".into(),
            Want::AtMost(MOST_READS_PER_MIB),
            reads,
        ),
        Goal::count(
            "syscalls",
            "syscalls: bulk body: chapter 4 epoll_wait per MiB".into(),
            Want::AtMost(MOST_WAITS_PER_MIB),
            waits,
        ),
    ])
}

fn table(per_mib: &[[f64; KINDS.len()]], cpu: &[Vec<f64>], paired: &Summary) -> String {
    let mut rows: Vec<Vec<String>> = ["recvfrom", "epoll_wait", "epoll_ctl", "futex"]
        .iter()
        .filter_map(|name| {
            let k = KINDS.iter().position(|(kind, _)| kind.starts_with(name))?;
            let values = per_mib.iter().map(|counted| format!("{:.1}", counted[k]));
            Some(
                std::iter::once(KINDS[k].0.to_string())
                    .chain(values)
                    .collect(),
            )
        })
        .collect();
    rows.push(
        std::iter::once("**all system calls**".to_string())
            .chain(
                per_mib
                    .iter()
                    .map(|counted| format!("**{:.1}**", counted.iter().sum::<f64>())),
            )
            .collect(),
    );
    rows.push(
        std::iter::once("CPU time, median (middle half)".to_string())
            .chain(cpu.iter().map(|values| {
                let s = summarize(values);
                format!(
                    "{:.2} ms ({:.2} to {:.2})",
                    s.median, s.quartiles.0, s.quartiles.1
                )
            }))
            .collect(),
    );
    format!(
        "{}\nCPU time per MiB, chapter 4 / tokio, paired: {} ({:.0}% interval {} to {}, \
         {} pairs).\n",
        output::table(&["per MiB of endless body", "chapter 4", "tokio"], &rows),
        ratio(paired.median),
        paired.confidence * 100.0,
        ratio(paired.interval.0),
        ratio(paired.interval.1),
        paired.count
    )
}
