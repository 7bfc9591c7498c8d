//! The scale measurement's contender: chapter 4's program, on tokio.
//!
//! Same command line as chapter 4's binary (`--addr HOST:PORT -n N --scale F
//! --workers W --deadline S`, parsed by chapter 4's own `cli`), so the same
//! paths, delays and request bytes; the same HTTP parser; the same output
//! line for each answer and the same summary line. What differs is what
//! this measurement compares: one tokio task per request on a multi-thread
//! runtime with W workers, instead of W threads each turning its own epoll.
//!
//! Each task reads the way chapter 4 does, into a 4 KiB buffer on the
//! stack, copied into the response so far: `readable().await`, then
//! `try_read`. The buffer is not alive across an `.await`, so it is not
//! part of the task's state, and a waiting task holds only what chapter 4's
//! connection holds.
//!
//! Built and started by the `measure` bench target; not a tutorial chapter.

use std::io::{self, Write};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use d_ready_list::cli;
use d_ready_list::http::{self, Parsed};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const READ_CHUNK: usize = 4096;

fn main() -> ExitCode {
    let options = match cli::parse(std::env::args().skip(1)) {
        Ok(Some(options)) => options,
        Ok(None) => {
            println!("tokio_client: chapter 4's flags (--addr is required)");
            return ExitCode::SUCCESS;
        }
        Err(error) => {
            eprintln!("tokio_client: {error}");
            return ExitCode::from(2);
        }
    };
    let Some(addr) = options.addr.as_deref().and_then(|a| a.parse().ok()) else {
        eprintln!("tokio_client: --addr IP:PORT is required");
        return ExitCode::from(2);
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(options.workers)
        .enable_io()
        .enable_time()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("tokio_client: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let run = run(addr, options.paths(), options.deadline(), options.workers);
    match runtime.block_on(run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("tokio_client: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(
    addr: SocketAddr,
    paths: Vec<String>,
    deadline: Duration,
    threads: usize,
) -> io::Result<()> {
    let start = Instant::now();
    let host = addr.to_string();
    let tasks: Vec<_> = paths
        .into_iter()
        .enumerate()
        .map(|(request, path)| {
            let bytes: Arc<[u8]> = http::request(&path, &host).into_bytes().into();
            tokio::spawn(async move {
                let body = fetch(addr, &bytes).await.map_err(|error| {
                    io::Error::new(
                        error.kind(),
                        format!("request {request} (GET {path}): {error}"),
                    )
                })?;
                let line = format!(
                    "request {:<3} {:>6} ms  {}\n",
                    request,
                    start.elapsed().as_millis(),
                    http::preview(&body, 60)
                );
                io::stdout().lock().write_all(line.as_bytes())
            })
        })
        .collect();
    let count = tasks.len();
    let all = async {
        for task in tasks {
            task.await.map_err(io::Error::other)??;
        }
        Ok::<(), io::Error>(())
    };
    match tokio::time::timeout(deadline, all).await {
        Ok(result) => result?,
        Err(_) => {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("gave up after the {} s deadline", deadline.as_secs_f64()),
            ));
        }
    }
    println!(
        "{count} responses in {} ms on {threads} threads",
        start.elapsed().as_millis()
    );
    Ok(())
}

/// Connects, sends the request, and reads until the response is whole.
async fn fetch(addr: SocketAddr, request: &[u8]) -> io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.write_all(request).await?;
    let mut received = Vec::new();
    loop {
        stream.readable().await?;
        let mut buffer = [0; READ_CHUNK];
        let eof = match stream.try_read(&mut buffer) {
            Ok(0) => true,
            Ok(n) => {
                received.extend_from_slice(&buffer[..n]);
                false
            }
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => continue,
            Err(error) => return Err(error),
        };
        match http::parse(&received, eof) {
            Parsed::Complete(response) if response.status == 200 => return Ok(response.body),
            Parsed::Complete(response) => {
                return Err(io::Error::other(format!(
                    "the server answered {} {}",
                    response.status, response.reason
                )));
            }
            Parsed::Invalid(invalid) => return Err(io::Error::other(invalid.to_string())),
            Parsed::Incomplete if eof => {
                return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
            }
            Parsed::Incomplete => {}
        }
    }
}
