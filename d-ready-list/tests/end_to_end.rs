//! The whole client against the embedded delay server, over loopback TCP.

mod support;

use std::collections::BTreeSet;
use std::io::{ErrorKind, Read, Write};
use std::time::Duration;

use d_ready_list::cli;
use d_ready_list::client::{self, Budget, Config, Error, Problem, Summary};
use d_ready_list::delay_server::DelayServer;
use d_ready_list::http::Invalid;
use support::{PATIENCE, refusing_addr, within};

/// More than one, so that every test here also runs several workers.
const WORKERS: usize = 3;

/// Shorter than `PATIENCE`, so that a stalled run fails with the client's
/// own deadline error, which names the request it was waiting for.
const DEADLINE: Duration = Duration::from_secs(10);

/// Runs the client for `paths` against a fresh embedded server, failing the
/// test instead of hanging. Returns the result and everything it printed.
fn run(paths: &[&str], deadline: Duration) -> (Result<Summary, Error>, String) {
    run_with(paths, deadline, false, 0)
}

/// `run`, with every request hedged or not, and a limit on each worker's
/// open connections (0: none).
fn run_with(
    paths: &[&str],
    deadline: Duration,
    hedge: bool,
    max_open: usize,
) -> (Result<Summary, Error>, String) {
    // Hundreds of connections, and the server's end of each, beside other
    // tests on parallel threads: more than the 1024 many desktops start with.
    d_ready_list::raise_fd_limit().expect("raise the open-file limit");
    let paths: Vec<String> = paths.iter().map(|p| p.to_string()).collect();
    within(PATIENCE, "client run", move || {
        let server = DelayServer::start().expect("start delay server");
        let config = Config {
            addr: server.addr(),
            paths,
            deadline,
            workers: WORKERS,
            hedge,
            endless: false,
            max_open,
            budget: Budget::default(),
        };
        let mut out = Vec::new();
        let result = client::run(&config, &mut out);
        (result, String::from_utf8(out).expect("utf-8 output"))
    })
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

    let order: Vec<usize> = summary.completed.iter().map(|c| c.request).collect();
    assert_eq!(order, [1, 3, 0, 2]);
    for completed in &summary.completed {
        let i = completed.request;
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
/// 300 requests over the workers, with delays that bunch them; each is
/// answered exactly once, with its own body, on one whole line. At most 100
/// connections per worker are open at once, so that many open mid-turn, and
/// so that the run needs about 600 fds (each connection and the server's
/// end of it) even with `ulimit -n 1024`. One such run at a time.
fn check_exactly_once(hedge: bool) -> Summary {
    const REQUESTS: usize = 300;
    static ONE_HEAVY_RUN_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _alone = ONE_HEAVY_RUN_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let paths: Vec<String> = (0..REQUESTS)
        .map(|i| format!("/{}/r{i}", (i * 7) % 50))
        .collect();
    let paths: Vec<&str> = paths.iter().map(String::as_str).collect();
    let (result, output) = run_with(&paths, DEADLINE, hedge, 100);
    let summary = result.expect("run succeeds");

    let requests: BTreeSet<usize> = summary.completed.iter().map(|c| c.request).collect();
    assert_eq!(summary.completed.len(), REQUESTS);
    assert_eq!(requests, (0..REQUESTS).collect());
    for completed in &summary.completed {
        assert_eq!(completed.body, format!("r{}", completed.request).as_bytes());
    }
    let lines: Vec<&str> = output.lines().collect();
    assert_eq!(lines.len(), REQUESTS + 1 + usize::from(hedge));
    for line in &lines[..REQUESTS] {
        let words: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(words.len(), 5, "{line}");
        assert_eq!(format!("r{}", words[1]), words[4], "{line}");
    }
    summary
}

#[test]
fn under_load_every_response_is_handled_exactly_once_and_none_is_lost() {
    let stats = check_exactly_once(false).stats;
    // Every connection was registered once and deregistered once, and
    // nothing in between: however many events it had, none cost an
    // `epoll_ctl`. (And each worker registered its waker.) The registry
    // counts the calls it makes, so a call deleted is a call not counted.
    assert!(stats.events >= 300, "{stats:?}");
    assert_eq!(stats.epoll_ctl, 2 * 300 + WORKERS, "{stats:?}");
    assert_eq!((stats.twins_closed, stats.ignored), (0, 0), "{stats:?}");
}

#[test]
fn hedged_every_request_is_answered_once_and_every_twin_closed() {
    let stats = check_exactly_once(true).stats;
    assert_eq!(stats.twins_closed, 300, "{stats:?}");
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
    let order: Vec<usize> = result
        .expect("run succeeds")
        .completed
        .iter()
        .map(|c| c.request)
        .collect();
    assert_eq!(order, [4, 3, 2, 1, 0]);
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
        Error::Request {
            request, problem, ..
        } => {
            assert_eq!(request, 1);
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
        hedge: false,
        endless: false,
        max_open: 0,
        budget: Budget::default(),
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

/// Runs one request beside `--endless` against a server that answers
/// `/endless` with `answer` and never answers anything else; returns the
/// run's error.
fn endless_against(answer: &'static [u8]) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let mut held = Vec::new();
        for _ in 0..2 {
            let (mut stream, _) = listener.accept().unwrap();
            let mut head = Vec::new();
            let mut byte = [0];
            while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap() == 1 {
                head.push(byte[0]);
            }
            if head.starts_with(b"GET /endless ") {
                let _ = stream.write_all(answer);
            }
            held.push(stream);
        }
        held
    });
    let config = Config {
        addr,
        paths: vec!["/0/never".to_string()],
        deadline: DEADLINE,
        workers: 1,
        hedge: false,
        endless: true,
        max_open: 0,
        budget: Budget::default(),
    };
    let result = within(PATIENCE, "client run", move || {
        client::run(&config, &mut Vec::new())
    });
    drop(server.join().unwrap());
    result.expect_err("there is no endless body").to_string()
}

#[test]
fn endless_against_a_server_without_it_says_so() {
    // A 404 whose body has no length and is never closed: only its status
    // says that this is not the endless body.
    let message = endless_against(b"HTTP/1.1 404 Not Found\r\n\r\nNot Found");
    assert!(
        message.contains("404 Not Found") && message.contains("needs a server with /endless"),
        "{message}"
    );
}

#[test]
fn an_endless_body_that_ends_is_an_error_not_an_answer() {
    // A server that answers every path with a short 200 has no /endless.
    let message = endless_against(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi");
    assert!(message.contains("the endless body ended"), "{message}");
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
        hedge: false,
        endless: false,
        max_open: 0,
        budget: Budget::default(),
    }
}

// ANCHOR: max_open
#[test]
fn with_one_connection_open_at_a_time_the_requests_go_one_after_another() {
    let server = DelayServer::start().expect("start delay server");
    let config = Config {
        paths: (0..4).map(|i| format!("/100/one-{i}")).collect(),
        workers: 1,
        max_open: 1,
        ..one_request(server.addr())
    };
    let summary = within(PATIENCE, "client run", move || {
        client::run(&config, &mut Vec::new())
    })
    .expect("every request answered");
    assert_eq!(summary.completed.len(), 4);
    // Four 100 ms waits that cannot overlap. (A lower bound: a busy machine
    // makes a run slower, never faster.)
    assert!(
        summary.elapsed >= Duration::from_millis(400),
        "{:?}: the waits overlapped",
        summary.elapsed
    );
}
// ANCHOR_END: max_open

#[test]
fn the_endless_sender_does_not_count_against_max_open() {
    let server = DelayServer::start().expect("start delay server");
    let config = Config {
        paths: vec!["/0/first".to_string(), "/0/second".to_string()],
        workers: 1,
        max_open: 1,
        endless: true,
        deadline: Duration::from_secs(5),
        ..one_request(server.addr())
    };
    let summary = within(PATIENCE, "client run", move || {
        client::run(&config, &mut Vec::new())
    })
    .expect("both requests answered beside the endless body");
    assert_eq!(summary.completed.len(), 2);
}
