//! After a whole run, in this process, every fd it opened is closed again:
//! the epoll fd, every connection, and the delay server's sockets. Its own
//! file (so its own process): other tests would open fds meanwhile.

mod support;

use std::time::Duration;

use d_ready_list::client::{self, Budget, Config};
use d_ready_list::delay_server::DelayServer;
use support::{PATIENCE, open_fds, within};

/// More than one, so that every worker's epoll and connections are counted.
const WORKERS: usize = 3;

fn run_once(paths: &[&str], hedge: bool) -> bool {
    let paths: Vec<String> = paths.iter().map(|p| p.to_string()).collect();
    within(PATIENCE, "client run", move || {
        let server = DelayServer::start().expect("start delay server");
        let config = Config {
            addr: server.addr(),
            paths,
            deadline: Duration::from_secs(10),
            workers: WORKERS,
            hedge,
            endless: false,
            max_open: 0,
            budget: Budget::default(),
        };
        client::run(&config, &mut Vec::new()).is_ok()
    })
}

#[test]
fn a_run_closes_every_fd_it_opened_whether_it_succeeds_or_fails() {
    // Warm up once: the first run may open fds that live for the process
    // (the standard library's own, for example).
    assert!(run_once(&["/0/warm-up"], false));
    let before = open_fds();
    let good = ["/100/a", "/0/b", "/large/300000", "/drip/c"];
    assert!(run_once(&good, false));
    assert_eq!(open_fds(), before, "after a successful run");
    assert!(run_once(&good, true));
    assert_eq!(open_fds(), before, "after a hedged run, twins closed");
    assert!(!run_once(&["/100/a", "/reset", "/silent"], false));
    assert_eq!(open_fds(), before, "after a failed run");
}
