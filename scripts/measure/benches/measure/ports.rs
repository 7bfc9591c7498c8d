//! Ephemeral ports: what limits how many connections one client address can
//! open to one server address, and what several server addresses change.
//! Non-blocking connects only (nothing is sent), timed with the thread's
//! own CPU time, since `connect` is where the kernel picks the port.
//!
//! Run by the scale measurement, and only in its own network namespace:
//! the small-range rows narrow `ip_local_port_range` for a moment, which
//! must never touch the machine's own setting.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};

use socket2::{Domain, Protocol, Socket, Type};

use crate::output;
use crate::runs::Context;
use measure::stats::median;

const RANGE_FILE: &str = "/proc/sys/net/ipv4/ip_local_port_range";
const REPEATS: usize = 3;

/// One row: `connects` sockets spread over `destinations` listeners, with
/// `ports` ephemeral ports to choose from.
struct Trial {
    ports: u64,
    destinations: usize,
    connects: usize,
    connected: usize,
    unavailable: usize,
    cpu_ms: Vec<f64>,
}

/// Runs the trials; `connects` is the larger count, within the open-file
/// limit. Returns the Markdown table, after writing `scale-ports.csv`.
pub fn run(ctx: &Context, connects: usize) -> io::Result<String> {
    let range = std::fs::read_to_string(RANGE_FILE)?;
    let ports = port_count(&range)?;
    let mut trials = Vec::new();
    for destinations in [1, 2] {
        trials.push(trial(ports, destinations, connects)?);
    }
    // The limit itself, in small: a thousand ports, fifteen hundred connects.
    std::fs::write(RANGE_FILE, "40000 40999")?;
    let small = (|| {
        let mut small = Vec::new();
        for destinations in [1, 2] {
            small.push(trial(1000, destinations, 1500)?);
        }
        Ok::<_, io::Error>(small)
    })();
    std::fs::write(RANGE_FILE, range.trim())?;
    trials.extend(small?);

    let rows: Vec<String> = trials
        .iter()
        .map(|t| {
            format!(
                "{},{},{},{},{},{:.1}",
                t.ports,
                t.destinations,
                t.connects,
                t.connected,
                t.unavailable,
                median(&t.cpu_ms)
            )
        })
        .collect();
    ctx.write_csv(
        "scale-ports.csv",
        "ephemeral_ports,server_addresses,connects,connected,unavailable,cpu_ms",
        &rows,
    )?;
    let table: Vec<Vec<String>> = trials
        .iter()
        .map(|t| {
            vec![
                t.ports.to_string(),
                t.destinations.to_string(),
                t.connects.to_string(),
                t.connected.to_string(),
                t.unavailable.to_string(),
                format!("{:.0} ms", median(&t.cpu_ms)),
            ]
        })
        .collect();
    Ok(format!(
        "{}\nNon-blocking connects from one process on 127.0.0.1, spread evenly over \
         listeners on one or two ports; \"unavailable\" is `EADDRNOTAVAIL`, no port \
         left. CPU time: the median of {REPEATS} runs.\n",
        output::table(
            &[
                "ephemeral ports",
                "server addresses",
                "connects",
                "connected",
                "unavailable",
                "CPU time of the connects",
            ],
            &table
        )
    ))
}

fn port_count(range: &str) -> io::Result<u64> {
    let bounds: Vec<u64> = range
        .split_whitespace()
        .filter_map(|n| n.parse().ok())
        .collect();
    match bounds[..] {
        [low, high] if high >= low => Ok(high - low + 1),
        _ => Err(io::Error::other(format!("ip_local_port_range: {range:?}"))),
    }
}

fn trial(ports: u64, destinations: usize, connects: usize) -> io::Result<Trial> {
    let mut result = Trial {
        ports,
        destinations,
        connects,
        connected: 0,
        unavailable: 0,
        cpu_ms: Vec::new(),
    };
    for _ in 0..REPEATS {
        // Fresh listeners each time: no connection of an earlier run can
        // share a port pair with this one's.
        let listeners = (0..destinations)
            .map(|_| TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))))
            .collect::<io::Result<Vec<_>>>()?;
        let addrs = listeners
            .iter()
            .map(|listener| listener.local_addr().map(socket2::SockAddr::from))
            .collect::<io::Result<Vec<_>>>()?;
        let mut sockets = Vec::with_capacity(connects);
        let (mut connected, mut unavailable) = (0, 0);
        let before = thread_cpu()?;
        for i in 0..connects {
            let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
            socket.set_nonblocking(true)?;
            match socket.connect(&addrs[i % destinations]) {
                Ok(()) => connected += 1,
                Err(error) if error.raw_os_error() == Some(libc::EINPROGRESS) => connected += 1,
                Err(error) if error.raw_os_error() == Some(libc::EADDRNOTAVAIL) => {
                    unavailable += 1;
                }
                Err(error) => return Err(error),
            }
            sockets.push(socket);
        }
        result.cpu_ms.push((thread_cpu()? - before) * 1000.0);
        result.connected = connected;
        result.unavailable = unavailable;
        drop(sockets);
        drop(listeners);
    }
    Ok(result)
}

/// This thread's CPU time so far, user and system, in seconds.
fn thread_cpu() -> io::Result<f64> {
    // SAFETY: rusage is plain data, for which all zeroes is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes one rusage through the pointer, which points
    // at one that lives for the whole call.
    if unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) } == -1 {
        return Err(io::Error::last_os_error());
    }
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Ok(seconds(usage.ru_utime) + seconds(usage.ru_stime))
}
