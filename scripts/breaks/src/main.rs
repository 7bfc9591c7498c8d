//! `scripts/break`: applies the smallest change that makes one of the book's
//! claims false, in a scratch copy of the workspace, and runs the tests that
//! must then fail. The breaks themselves are data, in `list.rs`.
//!
//! Usage:
//!   scripts/break list                  every break, one line each
//!   scripts/break CHAPTER ID            apply one, run its tests, show them fail
//!   scripts/break check [CHAPTER...]    prove every break (CI runs this)
//!   scripts/break markdown DIR          write the book's generated break pages
//!
//! The scratch copy has its own target directory, `target/breaks/target`
//! under the checkout, and ignores `CARGO_TARGET_DIR`: a break never
//! touches the reader's own build (see `Scratch`).

mod list;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::io;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use list::{BREAKS, Break};

/// The chapters, in reading order; a break names one of them.
const CHAPTERS: [&str; 4] = ["a-epoll", "b-edge-triggered", "c-oneshot", "d-ready-list"];

/// The longest a test run may take before it counts as hung. Every test
/// has its own, shorter limit; this only keeps a broken one from hanging
/// the check.
const RUN_LIMIT: Duration = Duration::from_secs(180);

/// The "test" of a break that the compiler catches: the chapter's own
/// build, which a `const` assertion stops.
const BUILD: &str = "build";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match words.as_slice() {
        ["list"] => list(),
        ["check", chapters @ ..] => check(chapters),
        ["markdown", dir] => markdown(Path::new(dir)),
        [chapter, id] => one(chapter, id),
        _ => {
            Err("usage: scripts/break list | CHAPTER ID | check [CHAPTER...] | markdown DIR".into())
        }
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(message) => {
            eprintln!("scripts/break: {message}");
            ExitCode::from(2)
        }
    }
}

fn list() -> Result<bool, String> {
    // `writeln!`, not `println!`: a reader's `scripts/break list | head`
    // closes the pipe early, which is the end of the listing, not a panic.
    let mut out = std::io::stdout().lock();
    for b in BREAKS {
        let line = writeln!(out, "{:<17} {:<24} {}", b.chapter, b.id, b.claim);
        if line.is_err() {
            break;
        }
    }
    Ok(true)
}

/// The reader's "break it and watch it fail".
fn one(chapter: &str, id: &str) -> Result<bool, String> {
    let b = BREAKS
        .iter()
        .find(|b| b.chapter == chapter && b.id == id)
        .ok_or_else(|| format!("no break {chapter} {id}; `scripts/break list` shows them all"))?;
    let scratch = Scratch::new()?;
    let original = scratch.apply(b)?;
    println!("break {} {}: in {}/{}", b.chapter, b.id, b.chapter, b.file);
    println!("{}", indent("- ", b.find));
    println!("{}", indent("+ ", b.replace));
    println!("running: {}\n", b.tests.join(", "));
    let outcome = scratch.run_tests(b.chapter, b.tests, true);
    scratch.restore(b, &original)?;
    match outcome? {
        Outcome::Passed => {
            println!(
                "\nThe tests passed: this break no longer breaks the claim. Please report it."
            );
            Ok(false)
        }
        Outcome::Failed | Outcome::TimedOut => {
            let what = if b.tests.contains(&BUILD) {
                "The build failed"
            } else {
                "The tests failed"
            };
            println!(
                "\n{what}, as they must: the claim \"{}\" no longer holds.",
                b.claim
            );
            println!("Your checkout is untouched; the change lived in target/breaks/work.");
            Ok(true)
        }
        Outcome::DoesNotBuild => Err("the break does not build; please report it".into()),
    }
}

/// Proves every break: it applies exactly once, builds, and its tests pass
/// without it and fail with it (a break whose test is `build` must instead
/// stop the build: a `const` assertion catches it).
fn check(only: &[&str]) -> Result<bool, String> {
    for chapter in only {
        if !CHAPTERS.contains(chapter) {
            return Err(format!("no chapter {chapter}"));
        }
    }
    let chosen: Vec<&Break> = BREAKS
        .iter()
        .filter(|b| only.is_empty() || only.contains(&b.chapter))
        .collect();
    let scratch = Scratch::new()?;
    let (mut passed, mut failed) = (0, 0);
    let started = Instant::now();
    for chapter in CHAPTERS {
        let breaks: Vec<&&Break> = chosen.iter().filter(|b| b.chapter == chapter).collect();
        if breaks.is_empty() {
            continue;
        }
        // Without any break, every test the breaks name must pass.
        let mut tests: Vec<&str> = breaks
            .iter()
            .flat_map(|b| b.tests.iter().copied())
            .collect();
        tests.sort_unstable();
        tests.dedup();
        eprintln!(
            "{chapter}: {} breaks; first their {} tests, unbroken",
            breaks.len(),
            tests.len()
        );
        let unbroken = scratch.run_tests(chapter, &tests, false)?;
        if unbroken != Outcome::Passed {
            eprintln!("FAILED {chapter}: without a break, the named tests: {unbroken:?}");
            eprintln!("{chapter}: once more, with their output:");
            let again = scratch.run_tests(chapter, &tests, true)?;
            eprintln!("{chapter}: the second time: {again:?}");
            failed += breaks.len();
            continue;
        }
        for b in breaks {
            let verdict = match scratch.apply(b) {
                Err(problem) => Err(problem),
                Ok(original) => {
                    let outcome = scratch.run_tests(b.chapter, b.tests, false);
                    scratch.restore(b, &original)?;
                    match outcome? {
                        Outcome::Failed => Ok("its tests fail"),
                        Outcome::TimedOut => Err(format!("its tests hung past {RUN_LIMIT:?}")),
                        Outcome::Passed => Err("its tests still pass".to_string()),
                        Outcome::DoesNotBuild => Err("it does not build".to_string()),
                    }
                }
            };
            match verdict {
                Ok(how) => {
                    passed += 1;
                    eprintln!("ok     {} {}: {how}", b.chapter, b.id);
                }
                Err(why) => {
                    failed += 1;
                    eprintln!("FAILED {} {}: {why}", b.chapter, b.id);
                }
            }
        }
    }
    eprintln!("break check took {} s", started.elapsed().as_secs());
    println!("{passed} passed, {failed} failed");
    Ok(failed == 0)
}

/// Writes `CHAPTER.breaks.md` for each chapter page and `pitfalls.md`, the
/// pitfalls table, into `dir`.
fn markdown(dir: &Path) -> Result<bool, String> {
    fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let header = "| run | the mistake | what no longer holds | the test that fails |\n\
                  | --- | --- | --- | --- |\n";
    let mut pages: BTreeMap<&str, String> = BTreeMap::new();
    let mut pitfalls = String::from(
        "| pitfall | what must hold instead | page | break it | the test that fails |\n\
         | --- | --- | --- | --- | --- |\n",
    );
    // The pitfalls table in reading order: the chapters, then the page
    // after them.
    let mut in_order: Vec<&Break> = BREAKS.iter().collect();
    in_order.sort_by_key(|b| {
        CHAPTERS
            .iter()
            .position(|c| *c == b.page())
            .unwrap_or(CHAPTERS.len())
    });
    for b in in_order {
        let run = format!("`scripts/break {} {}`", b.chapter, b.id);
        let tests = tests_list(b.tests);
        let page = pages.entry(b.page()).or_insert_with(|| header.to_string());
        let _ = writeln!(page, "| {run} | {} | {} | {tests} |", b.mistake, b.claim);
        let _ = writeln!(
            pitfalls,
            "| {} | {} | [{}]({}.md) | {run} | {tests} |",
            b.mistake,
            b.claim,
            page_title(b.page()),
            b.page()
        );
    }
    for (page, table) in &pages {
        write(&dir.join(format!("{page}.breaks.md")), table)?;
    }
    write(&dir.join("pitfalls.md"), &pitfalls)?;
    Ok(true)
}

/// How the pitfalls table names a page: a chapter by its number.
fn page_title(page: &str) -> String {
    match CHAPTERS.iter().position(|c| *c == page) {
        Some(index) => format!("{}", index + 1),
        None if page == "server-side" => "server".to_string(),
        None if page == "readiness-to-completion" => "completion".to_string(),
        None => "futures".to_string(),
    }
}

/// The tests as cargo names them: a unit test without the `lib::` that
/// tells this tool to run it from the library.
fn tests_list(tests: &[&str]) -> String {
    let names: Vec<String> = tests
        .iter()
        .map(|&t| match t {
            BUILD => "the build (a `const` assertion)".to_string(),
            t => format!("`{}`", t.strip_prefix("lib::").unwrap_or(t)),
        })
        .collect();
    names.join(", ")
}

fn indent(prefix: &str, text: &str) -> String {
    text.lines()
        .map(|line| format!("{prefix}{line}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Passed,
    Failed,
    TimedOut,
    DoesNotBuild,
}

/// A copy of the chapters under `target/breaks/work`, with its own target
/// directory beside it, kept between runs so that each break rebuilds only
/// the crate it changes. The reader's checkout is only ever read.
struct Scratch {
    root: PathBuf,
    work: PathBuf,
    target: PathBuf,
}

impl Scratch {
    fn new() -> Result<Scratch, String> {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
        let root = root
            .canonicalize()
            .map_err(|e| format!("{}: {e}", root.display()))?;
        let scratch = Scratch {
            work: root.join("target/breaks/work"),
            target: root.join("target/breaks/target"),
            root,
        };
        scratch
            .sync()
            .map_err(|e| format!("cannot copy the chapters: {e}"))?;
        Ok(scratch)
    }

    /// Makes the copy equal to the checkout: the files git knows of
    /// (committed or not, but not ignored), in the four chapters.
    fn sync(&self) -> io::Result<()> {
        let listed = Command::new("git")
            .args([
                "ls-files",
                "-z",
                "--cached",
                "--others",
                "--exclude-standard",
                "--",
            ])
            .args(CHAPTERS)
            .current_dir(&self.root)
            .output()?;
        if !listed.status.success() {
            return Err(io::Error::other("git ls-files failed"));
        }
        let files: Vec<String> = String::from_utf8_lossy(&listed.stdout)
            .split('\0')
            .filter(|f| !f.is_empty() && self.root.join(f).is_file())
            .map(str::to_string)
            .collect();
        for chapter in CHAPTERS {
            remove_unlisted(&self.work.join(chapter), &self.work, &files)?;
        }
        for file in &files {
            copy_if_changed(&self.root.join(file), &self.work.join(file))?;
        }
        copy_if_changed(&self.root.join("Cargo.lock"), &self.work.join("Cargo.lock"))?;
        // The workspace's manifest, with only the chapters as members.
        let manifest = fs::read_to_string(self.root.join("Cargo.toml"))?;
        let members = format!("members = {CHAPTERS:?}");
        let manifest: String = manifest
            .lines()
            .map(|line| {
                if line.starts_with("members") {
                    members.as_str()
                } else {
                    line
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        write_if_changed(&self.work.join("Cargo.toml"), manifest.as_bytes())
    }

    /// Applies `b` and returns the file as it was.
    fn apply(&self, b: &Break) -> Result<String, String> {
        let path = self.work.join(b.chapter).join(b.file);
        let original = fs::read_to_string(&path)
            .map_err(|e| format!("{} {}: {}/{}: {e}", b.chapter, b.id, b.chapter, b.file))?;
        let found = original.matches(b.find).count();
        if found != 1 {
            return Err(format!(
                "{} {}: the text to replace occurs {found} times in {}/{}, not once",
                b.chapter, b.id, b.chapter, b.file
            ));
        }
        fs::write(&path, original.replacen(b.find, b.replace, 1)).map_err(|e| e.to_string())?;
        Ok(original)
    }

    fn restore(&self, b: &Break, original: &str) -> Result<(), String> {
        let path = self.work.join(b.chapter).join(b.file);
        fs::write(&path, original).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Builds, then runs, the named tests (`FILE::name`, or `lib::path::name`
    /// for a unit test), each test binary once.
    fn run_tests(&self, chapter: &str, tests: &[&str], show: bool) -> Result<Outcome, String> {
        // A break caught by the compiler fails the build, as it must.
        let build_must_fail = tests.contains(&BUILD);
        let mut by_target: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for test in tests.iter().filter(|test| **test != BUILD) {
            let (target, name) = test
                .split_once("::")
                .ok_or_else(|| format!("test {test:?} is not FILE::name"))?;
            by_target.entry(target).or_default().push(name);
        }
        let target_args = |target: &str| -> Vec<String> {
            if target == "lib" {
                vec!["--lib".into()]
            } else {
                vec!["--test".into(), target.into()]
            }
        };
        let mut build = self.cargo(chapter);
        build.arg("--no-run");
        for target in by_target.keys() {
            build.args(target_args(target));
        }
        let built = build
            .stdout(Stdio::null())
            .stderr(if show {
                Stdio::inherit()
            } else {
                Stdio::null()
            })
            .status()
            .map_err(|e| format!("cannot run cargo: {e}"))?;
        if !built.success() {
            return Ok(if build_must_fail {
                Outcome::Failed
            } else {
                Outcome::DoesNotBuild
            });
        }
        let mut outcome = Outcome::Passed;
        for (target, names) in by_target {
            let mut run = self.cargo(chapter);
            run.args(target_args(target))
                .arg("--")
                .arg("--exact")
                .args(&names);
            if !show {
                run.stdout(Stdio::null()).stderr(Stdio::null());
            }
            let child = run.spawn().map_err(|e| format!("cannot run cargo: {e}"))?;
            match wait_for(child, RUN_LIMIT)? {
                Some(true) => {}
                Some(false) => outcome = Outcome::Failed,
                None => return Ok(Outcome::TimedOut),
            }
        }
        Ok(outcome)
    }

    fn cargo(&self, chapter: &str) -> Command {
        let mut cargo = Command::new(env!("CARGO"));
        cargo
            .args(["test", "--quiet", "-p", chapter])
            .current_dir(&self.work)
            .env("CARGO_TARGET_DIR", &self.target);
        cargo
    }
}

/// Whether `child` succeeded, or `None` if it ran past `limit` (then it is
/// killed). A tool's wait, not a test's: it checks every 50 ms.
fn wait_for(mut child: Child, limit: Duration) -> Result<Option<bool>, String> {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            return Ok(Some(status.success()));
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(None);
        }
        thread::sleep(Duration::from_millis(50));
    }
}

fn copy_if_changed(from: &Path, to: &Path) -> io::Result<()> {
    write_if_changed(to, &fs::read(from)?)
}

/// Leaves an unchanged file alone, so that cargo does not rebuild for it.
fn write_if_changed(path: &Path, bytes: &[u8]) -> io::Result<()> {
    if fs::read(path).is_ok_and(|old| old == bytes) {
        return Ok(());
    }
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    fs::write(path, bytes)
}

/// Deletes files under `dir` that the checkout no longer has: an old test
/// file would otherwise still be built and run.
fn remove_unlisted(dir: &Path, work: &Path, files: &[String]) -> io::Result<()> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries {
        let path = entry?.path();
        if path.is_dir() {
            remove_unlisted(&path, work, files)?;
        } else if let Ok(relative) = path.strip_prefix(work) {
            if !files.iter().any(|f| Path::new(f) == relative) {
                fs::remove_file(&path)?;
            }
        }
    }
    Ok(())
}
