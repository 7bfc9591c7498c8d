//! The scale measurement's contender: chapter 4's program, on tokio.
//!
//! Same command line as chapter 4's binary (`--addr HOST:PORT -n N --scale F
//! --workers W --deadline S`, parsed by chapter 4's own `cli`), so the same
//! paths, delays and request bytes; the same HTTP parser; the same output
//! line for each answer and the same summary line. What differs is what
//! this measurement compares: one tokio task per request on a multi-thread
//! runtime with W workers, instead of W threads each turning its own epoll.
//!
//! Each task reads the way chapter 4 does, into a buffer on the stack,
//! copied into the response so far: `readable().await`, then `try_read`.
//! The buffer is not alive across an `.await`, so it is not part of the
//! task's state, and a waiting task holds only what chapter 4's connection
//! holds. It is 32 KiB: the size of chapter 4's reads (its budget of
//! 128 KiB a turn is read 32 KiB at a time), so
//! that a bulk body takes the same number of reads from either client and
//! the count of system calls per MiB compares the event loops, not the
//! buffers. (tokio itself has no one size: `BufReader` and `io::copy`
//! default to 8 KiB.)
//!
//! `--endless` also reads the delay server's endless body while the
//! requests run, checksummed with the same bit-at-a-time CRC-32 as chapter
//! 4's, so that both clients do the same work per byte, and reports the
//! MiB read in chapter 4's words.
//!
//! Built and started by the `measure` bench target; not a tutorial chapter.

use std::io::{self, Write};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use d_ready_list::cli;
use d_ready_list::endless::Checksum;
use d_ready_list::http::{self, Parsed};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const READ_CHUNK: usize = 32 * 1024;

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
    let run = run(
        addr,
        options.paths(),
        options.deadline(),
        options.workers,
        options.endless,
    );
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
    endless: bool,
) -> io::Result<()> {
    let start = Instant::now();
    let host = addr.to_string();
    let endless_bytes = Arc::new(AtomicU64::new(0));
    let endless_task = endless.then(|| {
        let request = http::request("/endless", &host).into_bytes();
        tokio::spawn(read_endless(addr, request, Arc::clone(&endless_bytes)))
    });
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
    if let Some(task) = endless_task {
        // It never ends by itself; a failure before now is the answer.
        if task.is_finished() {
            task.await.map_err(io::Error::other)??;
        } else {
            task.abort();
        }
    }
    println!(
        "{count} responses in {} ms on {threads} threads",
        start.elapsed().as_millis()
    );
    let bytes = endless_bytes.load(Ordering::Relaxed);
    if bytes > 0 {
        println!(
            "and beside them {} MiB of endless body checksummed",
            bytes >> 20
        );
    }
    Ok(())
}

/// Reads the endless body until aborted, checksumming it; `bytes` counts
/// the body bytes read so far. Returns only on a failure.
async fn read_endless(addr: SocketAddr, request: Vec<u8>, bytes: Arc<AtomicU64>) -> io::Result<()> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.write_all(&request).await?;
    let mut head = Vec::new();
    let mut checksum = None;
    loop {
        // `read().await`, not `readable().await` and `try_read` as for the
        // small answers: a `readable()` that finds the socket still ready
        // returns at once without spending tokio's cooperative budget, so a
        // task that always has data would never yield, and on one worker
        // thread the small requests would never run (tried: they missed
        // their deadline). `read` spends the budget and yields when it is
        // used up.
        let mut buffer = [0; READ_CHUNK];
        let data = match stream.read(&mut buffer).await? {
            0 => return Err(io::Error::from(io::ErrorKind::UnexpectedEof)),
            n => &buffer[..n],
        };
        let body = match checksum {
            Some(_) => data,
            None => {
                head.extend_from_slice(data);
                let Some(parsed) = http::parse_head(&head, false)
                    .map_err(|invalid| io::Error::other(invalid.to_string()))?
                else {
                    continue;
                };
                if parsed.status != 200 {
                    return Err(io::Error::other(format!(
                        "/endless: the server answered {} {}",
                        parsed.status, parsed.reason
                    )));
                }
                checksum = Some(Checksum::default());
                let start = head.len() - parsed.len;
                &data[data.len() - start..]
            }
        };
        // Chapter 4's own checksum, so both clients do the same work per
        // byte.
        checksum
            .as_mut()
            .expect("set once the head is whole")
            .add(body);
        bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
    }
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
