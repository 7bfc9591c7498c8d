//! The whole client against the embedded delay server, over loopback TCP.

mod support;

use std::collections::BTreeSet;
use std::io::ErrorKind;
use std::time::Duration;

use c_oneshot::client::{self, Config, Error, Problem, Summary};
use c_oneshot::delay_server::DelayServer;
use c_oneshot::http::Invalid;
use c_oneshot::{Token, cli};
use support::{PATIENCE, refusing_addr, within};

/// More than one, so that every test here also runs the worker pool.
const WORKERS: usize = 3;

/// Shorter than `PATIENCE`, so that a stalled run fails with the client's
/// own deadline error, which names the request it was waiting for.
const DEADLINE: Duration = Duration::from_secs(10);

/// Runs the client for `paths` against a fresh embedded server, failing the
/// test instead of hanging. Returns the result and everything it printed.
fn run(paths: &[&str], deadline: Duration) -> (Result<Summary, Error>, String) {
    // Hundreds of connections, and the server's end of each, beside other
    // tests on parallel threads: more than the 1024 many desktops start with.
    c_oneshot::raise_fd_limit().expect("raise the open-file limit");
    let paths: Vec<String> = paths.iter().map(|p| p.to_string()).collect();
    within(PATIENCE, "client run", move || {
        let server = DelayServer::start().expect("start delay server");
        let config = Config {
            addr: server.addr(),
            paths,
            deadline,
            workers: WORKERS,
        };
        let mut out = Vec::new();
        let result = client::run(&config, &mut out);
        (result, String::from_utf8(out).expect("utf-8 output"))
    })
}

#[test]
fn with_no_requests_the_run_ends_at_once() {
    let start = std::time::Instant::now();
    let (result, _) = run(&[], DEADLINE);
    let summary = result.expect("an empty run succeeds");
    assert!(summary.completed.is_empty());
    // Not at the deadline: nothing is waited for.
    assert!(start.elapsed() < DEADLINE / 2, "took {:?}", start.elapsed());
}

// ANCHOR: order
#[test]
fn every_response_arrives_and_the_shorter_delays_finish_first() {
    // Tokens 0..4 with delays in no particular order, 150 ms apart.
    let delays = [300, 0, 450, 150];
    let paths: Vec<String> = delays
        .iter()
        .enumerate()
        .map(|(i, ms)| format!("/{ms}/body-{i}"))
        .collect();
    let paths: Vec<&str> = paths.iter().map(String::as_str).collect();
    let (result, output) = run(&paths, DEADLINE);
    let summary = result.expect("run succeeds");

    let order: Vec<Token> = summary.completed.iter().map(|c| c.token).collect();
    assert_eq!(order, [Token(1), Token(3), Token(0), Token(2)]);
    for completed in &summary.completed {
        let i = completed.token.0;
        assert_eq!(completed.body, format!("body-{i}").as_bytes());
        assert!(completed.elapsed >= Duration::from_millis(delays[i]));
    }
    // One line per response, each printed once, then the summary.
    let lines: Vec<&str> = output.lines().collect();
    assert_eq!(lines.len(), 5, "{output}");
    let printed: BTreeSet<&str> = lines[..4]
        .iter()
        .map(|l| l.split_whitespace().last().unwrap())
        .collect();
    assert_eq!(
        printed,
        BTreeSet::from(["body-0", "body-1", "body-2", "body-3"])
    );
    assert!(lines[4].starts_with("4 responses in "), "{output}");
}
// ANCHOR_END: order

// ANCHOR: not_twice
#[test]
fn a_finished_connection_is_not_counted_again() {
    // Data and EOF can come as two edges: a loop that counted events or
    // EOFs, not responses, would end before the slow one arrives.
    let (result, _) = run(&["/0/fast", "/400/slow"], DEADLINE);
    let summary = result.expect("run succeeds");
    let bodies: Vec<&[u8]> = summary
        .completed
        .iter()
        .map(|c| c.body.as_slice())
        .collect();
    assert_eq!(bodies, [&b"fast"[..], &b"slow"[..]]);
    assert!(summary.elapsed >= Duration::from_millis(400));
}
// ANCHOR_END: not_twice

// ANCHOR: exactly_once
#[test]
fn under_load_every_response_is_handled_exactly_once_and_none_is_lost() {
    // 300 requests over the worker pool, with delays that bunch them.
    const REQUESTS: usize = 300;
    let paths: Vec<String> = (0..REQUESTS)
        .map(|i| format!("/{}/r{i}", (i * 7) % 50))
        .collect();
    let paths: Vec<&str> = paths.iter().map(String::as_str).collect();
    let (result, output) = run(&paths, DEADLINE);
    let summary = result.expect("run succeeds");

    // Every token exactly once, with its own body.
    let tokens: BTreeSet<Token> = summary.completed.iter().map(|c| c.token).collect();
    assert_eq!(summary.completed.len(), REQUESTS);
    assert_eq!(tokens, (0..REQUESTS).map(Token).collect());
    for completed in &summary.completed {
        assert_eq!(completed.body, format!("r{}", completed.token.0).as_bytes());
    }
    // Every line whole: one per response, each naming its own token.
    let lines: Vec<&str> = output.lines().collect();
    assert_eq!(lines.len(), REQUESTS + 1);
    for line in &lines[..REQUESTS] {
        let words: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(words.len(), 5, "{line}");
        assert_eq!(format!("r{}", words[1]), words[4], "{line}");
    }
    // One-shot's price, counted: every event that did not finish its
    // connection was followed by exactly one re-arm.
    assert_eq!(summary.events - summary.rearms, REQUESTS);
    assert!(
        summary.rearms >= REQUESTS,
        "each connection is re-armed at least once"
    );
}
// ANCHOR_END: exactly_once

#[test]
fn the_default_demo_plan_completes_in_reverse_order() {
    let options = cli::Options {
        scale: 0.2,
        ..cli::Options::default()
    };
    let paths = options.paths();
    let paths: Vec<&str> = paths.iter().map(String::as_str).collect();
    let (result, _) = run(&paths, options.deadline());
    let order: Vec<Token> = result
        .expect("run succeeds")
        .completed
        .iter()
        .map(|c| c.token)
        .collect();
    assert_eq!(order, [Token(4), Token(3), Token(2), Token(1), Token(0)]);
}

#[test]
fn a_large_body_takes_many_reads_and_arrives_whole() {
    let (result, output) = run(&["/large/1000000"], DEADLINE);
    let summary = result.expect("run succeeds");
    let body = &summary.completed[0].body;
    assert_eq!(body.len(), 1_000_000);
    assert!(body.iter().all(|&b| b == b'\n' || b.is_ascii_lowercase()));
    assert!(output.contains("... (1000000 bytes)"), "{output}");
}

// ANCHOR: partial_writes
#[test]
fn a_request_too_big_for_one_write_is_sent_whole() {
    // Twice the largest send buffer the kernel gives a TCP socket: the
    // request cannot go in one write, so it takes several writable edges.
    let tcp_wmem = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_wmem").unwrap();
    let max_send_buffer: usize = tcp_wmem.split_whitespace().nth(2).unwrap().parse().unwrap();
    let message = "y".repeat(2 * max_send_buffer);
    let (result, _) = run(&[&format!("/0/{message}")], DEADLINE);
    let body = &result.expect("run succeeds").completed[0].body;
    assert!(
        body == message.as_bytes(),
        "{} of {} bytes came back",
        body.len(),
        message.len()
    );
}
// ANCHOR_END: partial_writes

#[test]
fn a_response_dripped_one_byte_at_a_time_arrives_whole() {
    let (result, _) = run(&["/drip/slowly"], DEADLINE);
    assert_eq!(result.expect("run succeeds").completed[0].body, b"slowly");
}

// ANCHOR: drip_does_not_block
#[test]
fn a_dripped_response_does_not_hold_up_the_others() {
    // 300 bytes of body and its head, one a millisecond: a third of a
    // second of dripping, beside an answer due at 100 ms. A blocking
    // socket would keep the one thread reading the drip until its end.
    let slow = "s".repeat(300);
    let drip = format!("/drip/{slow}");
    let (result, _) = run(&[&drip, "/100/fast"], DEADLINE);
    let summary = result.expect("run succeeds");
    let lengths: Vec<usize> = summary.completed.iter().map(|c| c.body.len()).collect();
    assert_eq!(
        lengths,
        ["fast".len(), slow.len()],
        "answers in the order they came"
    );
}
// ANCHOR_END: drip_does_not_block

/// Runs one good and one faulty request; the run must end in an error about
/// the faulty one, with a message of one line.
fn fault(path: &str) -> Problem {
    let (result, _) = run(&["/0/fine", path], DEADLINE);
    let error = result.expect_err("the fault must fail the run");
    let message = error.to_string();
    assert!(
        !message.contains('\n') && message.contains(path),
        "{message}"
    );
    match error {
        Error::Request { token, problem, .. } => {
            assert_eq!(token, Token(1));
            problem
        }
        other => panic!("expected a request error, got {other:?}"),
    }
}

// ANCHOR: faults
#[test]
fn each_fault_ends_the_run_with_a_clear_error() {
    assert!(matches!(
        fault("/close"),
        Problem::Response(Invalid::ClosedEarly { received: 0 })
    ));
    assert!(matches!(
        fault("/truncated"),
        Problem::Response(Invalid::Truncated {
            expected: 100,
            received: 10
        })
    ));
    assert!(matches!(
        fault("/malformed"),
        Problem::Response(Invalid::NotHttp(_))
    ));
    assert!(matches!(fault("/no/such/path"), Problem::Status(404, _)));
    match fault("/reset") {
        Problem::Io(error) => assert_eq!(error.kind(), ErrorKind::ConnectionReset),
        other => panic!("expected a reset, got {other:?}"),
    }
}

#[test]
fn a_server_that_never_answers_hits_the_deadline() {
    let deadline = Duration::from_millis(300);
    let (result, _) = run(&["/0/fine", "/silent"], deadline);
    match result.expect_err("the run must give up") {
        Error::Deadline { missing, .. } => assert_eq!(missing, ["/silent"]),
        other => panic!("expected the deadline, got {other:?}"),
    }
}
// ANCHOR_END: faults

#[test]
fn a_refused_connection_is_a_clear_error() {
    let addr = refusing_addr();
    let config = Config {
        addr,
        paths: vec!["/0/never".to_string()],
        deadline: PATIENCE,
        workers: WORKERS,
    };
    let result = within(PATIENCE, "client run", move || {
        client::run(&config, &mut Vec::new())
    });
    match result.expect_err("nothing listens there") {
        Error::Request {
            problem: Problem::Connect(source),
            ..
        } => assert_eq!(source.kind(), ErrorKind::ConnectionRefused),
        other => panic!("expected a refused connection, got {other:?}"),
    }
}

#[test]
fn a_config_with_no_workers_runs_on_one() {
    let server = DelayServer::start().expect("start delay server");
    let config = Config {
        workers: 0,
        ..one_request(server.addr())
    };
    let summary = within(PATIENCE, "client run", move || {
        client::run(&config, &mut Vec::new())
    })
    .expect("0 workers counts as 1");
    assert_eq!((summary.completed.len(), summary.threads), (1, 1));
}

fn one_request(addr: std::net::SocketAddr) -> Config {
    Config {
        addr,
        paths: vec!["/0/one".to_string()],
        deadline: DEADLINE,
        workers: WORKERS,
    }
}
