//! The contender for the server measurement: the delay server's main route
//! on axum, the web framework a tokio user would pick, so that chapter 4's
//! event-driven server (`d-ready-list/examples/server`) is measured against
//! what users run rather than against a strawman.
//!
//! Usage: axum_server [--workers N] [--deadline SECS]
//!
//! `GET /{delay_ms}/{message}`: after `delay_ms`, `200 OK` with the message
//! as the body; the connection closes after it, as the client asks
//! (`Connection: close`). Other paths get 404 (the endless body and the
//! faults are not part of the measured workload), and so does a message
//! with a `/` in it, which the route's one segment does not match and
//! chapter 4's server answers: the measured requests' messages have none. It listens on 127.0.0.1,
//! on a port the kernel picks, prints `server: listening on HOST:PORT`
//! (the line chapter 4's server prints), and runs on `--workers` tokio
//! worker threads until its standard input closes or the deadline passes.
//!
//! Built and started by the `measure` bench target; not a tutorial chapter.

use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use axum::Router;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::get;
use tokio::net::TcpSocket;

/// The backlog chapter 4's server asks for (the kernel caps it at
/// `net.core.somaxconn`): a burst of 10,000 connects must not overflow a
/// shorter queue on one side only.
const BACKLOG: u32 = 4096;

async fn delayed(Path((delay_ms, message)): Path<(String, String)>) -> (StatusCode, String) {
    match delay_ms.parse::<u64>() {
        Ok(delay_ms) => {
            tokio::time::sleep(Duration::from_millis(delay_ms)).await;
            (StatusCode::OK, message)
        }
        Err(_) => (StatusCode::NOT_FOUND, "no such path".into()),
    }
}

fn main() -> ExitCode {
    let mut workers = 2;
    let mut deadline = Duration::from_secs(600);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().and_then(|value| value.parse::<f64>().ok());
        match (flag.as_str(), value) {
            ("--workers", Some(n)) if n >= 1.0 => workers = n as usize,
            ("--deadline", Some(secs)) if secs > 0.0 => deadline = Duration::from_secs_f64(secs),
            _ => {
                eprintln!(
                    "axum_server: bad argument {flag:?}; usage: axum_server [--workers N] [--deadline SECS]"
                );
                return ExitCode::from(2);
            }
        }
    }
    // Stops when stdin closes (the measuring process holds the other end)
    // or at the deadline: it cannot outlive a run.
    std::thread::spawn(|| {
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
        std::process::exit(0);
    });
    std::thread::spawn(move || {
        std::thread::sleep(deadline);
        eprintln!("axum_server: deadline passed, stopping");
        std::process::exit(1);
    });
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("axum_server: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result: std::io::Result<()> = runtime.block_on(async {
        let socket = TcpSocket::new_v4()?;
        socket.set_reuseaddr(true)?;
        socket.bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?;
        let listener = socket.listen(BACKLOG)?;
        println!("server: listening on {}", listener.local_addr()?);
        let app = Router::new().route("/{delay_ms}/{message}", get(delayed));
        axum::serve(listener, app).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("axum_server: {error}");
            ExitCode::FAILURE
        }
    }
}
