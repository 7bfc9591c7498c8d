//! The delay server for the scale measurement, in a process of its own, so
//! that neither client pays for the server's threads or memory.
//!
//! Usage: delay_server threads|tokio [--deadline SECS]
//!
//! Prints `listening HOST:PORT` once it listens, and runs until its
//! standard input closes (the measuring process holds the other end) or the
//! deadline passes, whichever comes first: it cannot outlive a run.
//!
//! - `threads`: the chapters' own delay server, a thread per connection.
//!   This machine allows about 32,000 threads, so it cannot hold 50,000
//!   connections at once.
//! - `tokio`: the same protocol for `GET /{delay_ms}/{message}` (after
//!   `delay_ms`, `200 OK` with a `Content-Length` and the message as the
//!   body, then close), event-driven on tokio, so that connections cost no
//!   thread each. The chapters' other paths (`/endless`, the faults) are
//!   not needed here and get `404`.
//!
//! Built and started by the `measure` bench target; not a tutorial chapter.

use std::io::{self, Read};
use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use d_ready_list::delay_server::DelayServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// The chapters' server asks for the same backlog (the kernel caps it at
/// `net.core.somaxconn`).
const BACKLOG: u32 = 4096;
/// The longest request head read before giving up on it.
const MAX_HEAD: usize = 64 * 1024;
/// The default deadline: no run of the scale measurement comes near it.
const DEADLINE: Duration = Duration::from_secs(600);

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let kind = args.next().unwrap_or_default();
    let mut deadline = DEADLINE;
    while let Some(arg) = args.next() {
        match (
            arg.as_str(),
            args.next().and_then(|s| s.parse::<f64>().ok()),
        ) {
            ("--deadline", Some(secs)) if secs > 0.0 => deadline = Duration::from_secs_f64(secs),
            _ => return usage(&format!("bad argument {arg:?}")),
        }
    }
    // Whatever else happens, the process ends by the deadline.
    std::thread::spawn(move || {
        std::thread::sleep(deadline);
        eprintln!("delay_server: deadline passed, stopping");
        std::process::exit(1);
    });
    let result = match kind.as_str() {
        "threads" => threads(),
        "tokio" => event_driven(),
        _ => return usage(&format!("unknown kind {kind:?}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("delay_server: {error}");
            ExitCode::FAILURE
        }
    }
}

fn usage(problem: &str) -> ExitCode {
    eprintln!("delay_server: {problem}; usage: delay_server threads|tokio [--deadline SECS]");
    ExitCode::from(2)
}

/// Blocks until standard input reaches its end (or fails).
fn wait_for_stdin_to_close() {
    let mut buffer = [0; 64];
    while matches!(io::stdin().read(&mut buffer), Ok(n) if n > 0) {}
}

fn threads() -> io::Result<()> {
    let server = DelayServer::start()?;
    println!("listening {}", server.addr());
    wait_for_stdin_to_close();
    drop(server);
    Ok(())
}

fn event_driven() -> io::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_io()
        .enable_time()
        .build()?;
    let listener = runtime.block_on(async {
        let socket = TcpSocket::new_v4()?;
        socket.bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?;
        socket.listen(BACKLOG)
    })?;
    println!("listening {}", listener.local_addr()?);
    runtime.spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    tokio::spawn(async move {
                        let _ = serve(stream).await;
                    });
                }
                // Out of fds, most likely: let some connections finish.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    });
    wait_for_stdin_to_close();
    runtime.shutdown_background();
    Ok(())
}

async fn serve(mut stream: TcpStream) -> io::Result<()> {
    let mut head = Vec::new();
    let mut buffer = [0; 4096];
    // Only where the blank line could be: what was searched before, less
    // the three bytes a blank line split across reads may start in.
    let mut searched = 0;
    while !head[searched..]
        .windows(4)
        .any(|window| window == b"\r\n\r\n")
    {
        searched = head.len().saturating_sub(3);
        let n = stream.read(&mut buffer).await?;
        if n == 0 || head.len() > MAX_HEAD {
            return Ok(());
        }
        head.extend_from_slice(&buffer[..n]);
    }
    let head = String::from_utf8_lossy(&head);
    let line = head.lines().next().unwrap_or_default();
    let reply = match delayed(line) {
        Some((delay, message)) => {
            tokio::time::sleep(delay).await;
            response("200 OK", &message)
        }
        None => response("404 Not Found", "no such path"),
    };
    stream.write_all(&reply).await?;
    stream.shutdown().await
}

/// `GET /{delay_ms}/{message} ...`: the delay and the message.
fn delayed(request_line: &str) -> Option<(Duration, String)> {
    let mut words = request_line.split(' ');
    let (Some("GET"), Some(path)) = (words.next(), words.next()) else {
        return None;
    };
    let (delay_ms, message) = path.strip_prefix('/')?.split_once('/')?;
    let delay = Duration::from_millis(delay_ms.parse().ok()?);
    Some((delay, percent_decode(message)))
}

/// The same head as the chapters' server sends.
fn response(status: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
