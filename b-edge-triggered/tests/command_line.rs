//! The binary as a reader runs it: real output, real exit codes, and one
//! clear line on stderr for everything that can go wrong.

mod support;

use std::io::Read;
use std::net::TcpListener;
use std::process::{Command, Output};
use std::thread;

use support::{PATIENCE, refusing_addr, within};

fn program(args: &[&str]) -> Output {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    within(PATIENCE, "the program", move || {
        Command::new(env!("CARGO_BIN_EXE_b-edge-triggered"))
            .args(&args)
            .output()
            .expect("run the program")
    })
}

/// The program failed with exit `code`, printing exactly one line, on
/// stderr, that names the program and contains `expected`.
fn assert_one_line_failure(output: &Output, code: i32, expected: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.is_empty(), "stdout: {stdout}");
    assert_eq!(output.status.code(), Some(code), "stderr: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "stderr: {stderr}");
    assert!(
        stderr.starts_with("b-edge-triggered: ") && stderr.contains(expected),
        "stderr: {stderr}"
    );
}

#[test]
fn the_default_run_prints_every_response_then_a_summary() {
    let output = program(&["--scale", "0.05"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(output.stderr.is_empty());
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 7, "{stdout}");
    assert!(lines[0].starts_with("delay server: 127.0.0.1:"), "{stdout}");
    // Every response once, in whatever order they came: the order is the
    // delays' doing, and a loaded machine can hold up one server thread
    // past the next one's delay. (The reverse order has a test of its own,
    // with the delays far apart.)
    let mut bodies: Vec<&str> = lines[1..6]
        .iter()
        .map(|line| {
            assert!(line.starts_with("token "), "{stdout}");
            line.rsplit(' ').next().unwrap_or_default()
        })
        .collect();
    bodies.sort_unstable();
    let expected = [
        "request-0",
        "request-1",
        "request-2",
        "request-3",
        "request-4",
    ];
    assert_eq!(bodies, expected, "{stdout}");
    assert!(
        lines[6].starts_with("5 responses in ") && lines[6].ends_with(" ms on 1 thread"),
        "{stdout}"
    );
}

#[test]
fn help_is_printed_and_is_not_an_error() {
    let output = program(&["--help"]);
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).contains("--addr HOST:PORT"));
}

#[test]
fn bad_flags_exit_2_with_one_line() {
    assert_one_line_failure(&program(&["--requests", "zero"]), 2, "--requests takes");
    assert_one_line_failure(&program(&["--bogus"]), 2, "unknown option");
    assert_one_line_failure(&program(&["--deadline"]), 2, "needs a value");
}

#[test]
fn a_refused_connection_exits_1_with_one_line() {
    let addr = refusing_addr().to_string();
    assert_one_line_failure(&program(&["--addr", &addr]), 1, "Connection refused");
}

#[test]
fn an_address_that_does_not_parse_exits_1_with_one_line() {
    assert_one_line_failure(&program(&["--addr", "no-port-here"]), 1, "cannot resolve");
}

#[test]
fn a_reset_exits_1_with_one_line() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    // Reset the first connection as soon as its request has arrived.
    let resetter = thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let _ = stream.read(&mut [0; 1024]);
        socket2::SockRef::from(&stream)
            .set_linger(Some(std::time::Duration::ZERO))
            .unwrap();
    });
    assert_one_line_failure(&program(&["--addr", &addr, "-n", "1"]), 1, "reset");
    resetter.join().unwrap();
}

#[test]
fn a_server_that_accepts_and_never_answers_exits_1_at_the_deadline() {
    // The kernel completes connections into the backlog; nobody reads them.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let output = program(&["--addr", &addr, "-n", "2", "--deadline", "0.3"]);
    assert_one_line_failure(&output, 1, "gave up after the 0.3 s deadline");
    drop(listener);
}
