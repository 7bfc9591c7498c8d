//! What the kernel says about a run's limits and its connect burst.

use std::io;

/// The open-file limit, which `main` has raised to the hard one and which
/// every process started here inherits.
pub fn fd_limit() -> io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit through the pointer, which points
    // at one that lives for the whole call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(limit.rlim_cur)
}

/// How many ports `ip_local_port_range` gives a client for one server.
pub fn ephemeral_ports() -> io::Result<u64> {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")?;
    let bounds: Vec<u64> = range
        .split_whitespace()
        .filter_map(|n| n.parse().ok())
        .collect();
    match bounds[..] {
        [low, high] if high >= low => Ok(high - low + 1),
        _ => Err(io::Error::other(format!("ip_local_port_range: {range:?}"))),
    }
}

/// `TcpExt: ListenOverflows`, `ListenDrops` and `TCPSynRetrans`:
/// connections the kernel turned away because a listener's accept queue
/// was full, all it turned away at listeners for any reason, and the SYNs
/// clients sent again for want of an answer.
pub fn listen_counters() -> io::Result<[u64; 3]> {
    let netstat = std::fs::read_to_string("/proc/thread-self/net/netstat")?;
    let lines: Vec<&str> = netstat
        .lines()
        .filter(|line| line.starts_with("TcpExt:"))
        .collect();
    let [names, values] = lines[..] else {
        return Err(io::Error::other("no TcpExt in /proc/net/netstat"));
    };
    let get = |wanted: &str| {
        names
            .split_whitespace()
            .zip(values.split_whitespace())
            .find(|(name, _)| *name == wanted)
            .and_then(|(_, value)| value.parse().ok())
            .ok_or_else(|| io::Error::other(format!("no {wanted} in /proc/net/netstat")))
    };
    Ok([
        get("ListenOverflows")?,
        get("ListenDrops")?,
        get("TCPSynRetrans")?,
    ])
}
