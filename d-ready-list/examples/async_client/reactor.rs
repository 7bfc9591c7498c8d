//! The reactor: chapter 4's `Poll`, and a table from token to `std::task::Waker`.
//!
//! A future whose read or write would block arms its socket under its token
//! and leaves its waker here; a wait turns the tokens the kernel hands back
//! into wakes. The reactor never runs a task itself.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::poll_fn;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsFd;
use std::rc::Rc;
use std::task::{self, Context, Waker};
use std::time::Duration;

use d_ready_list::{Events, Interest, Token};
use socket2::{Domain, Protocol, Socket, Type};

// ANCHOR: reactor
/// One per thread, shared by `Rc` between the executor and every socket.
#[derive(Debug)]
pub struct Reactor {
    poll: d_ready_list::Poll,
    events: RefCell<Events>,
    /// Every registered token; `Some` while a future waits on it. A token
    /// that is in the table is known to epoll, so arming it is a re-arm.
    wakers: RefCell<HashMap<Token, Option<Waker>>>,
    /// Tokens are never reused, so a late event cannot find a new socket.
    next_token: Cell<usize>,
    /// How many times we waited in epoll, and how many events that brought.
    pub waits: Cell<usize>,
    pub events_seen: Cell<usize>,
}
// ANCHOR_END: reactor

impl Reactor {
    pub fn new() -> io::Result<Rc<Reactor>> {
        Ok(Rc::new(Reactor {
            poll: d_ready_list::Poll::new()?,
            events: RefCell::new(Events::with_capacity(64)),
            wakers: RefCell::new(HashMap::new()),
            next_token: Cell::new(0),
            waits: Cell::new(0),
            events_seen: Cell::new(0),
        }))
    }

    pub fn token(&self) -> Token {
        let token = self.next_token.get();
        self.next_token.set(token + 1);
        Token(token)
    }
}

// ANCHOR: arm
impl Reactor {
    /// What `Pending` means: `source` is armed for `interest` under `token`,
    /// and `waker` is where the event will go. Chapter 4 registers one-shot,
    /// so after each event the source is silent until it is armed again;
    /// re-arming reports a source that is already ready, so bytes that came
    /// between our `WouldBlock` and this call are not missed.
    pub fn arm(
        &self,
        source: &impl AsFd,
        token: Token,
        interest: Interest,
        waker: &Waker,
    ) -> io::Result<()> {
        let mut wakers = self.wakers.borrow_mut();
        let registry = self.poll.registry();
        if wakers.contains_key(&token) {
            registry.reregister(source, token, interest)?;
        } else {
            registry.register(source, token, interest)?;
        }
        wakers.insert(token, Some(waker.clone()));
        Ok(())
    }

    /// Stops watching a source that is about to be closed.
    pub fn forget(&self, source: &impl AsFd, token: Token) {
        if self.wakers.borrow_mut().remove(&token).is_some() {
            let _ = self.poll.registry().deregister(source);
        }
    }
}
// ANCHOR_END: arm

// ANCHOR: wait
impl Reactor {
    /// Waits in epoll (for ever if `timeout` is `None`) and wakes exactly the
    /// tasks whose tokens came back. Each waker is taken out as it fires: an
    /// event is good for one wake, and the next `Pending` leaves a new one.
    pub fn wait(&self, timeout: Option<Duration>) -> io::Result<()> {
        let mut events = self.events.borrow_mut();
        self.poll.poll(&mut events, timeout)?;
        self.waits.set(self.waits.get() + 1);
        self.events_seen.set(self.events_seen.get() + events.len());
        let mut ready = Vec::new();
        let mut wakers = self.wakers.borrow_mut();
        for event in events.iter() {
            if let Some(waker) = wakers.get_mut(&event.token()).and_then(Option::take) {
                ready.push(waker);
            }
        }
        // A waker may run any code, even code that arms another socket:
        // let go of the table first.
        drop(wakers);
        ready.into_iter().for_each(Waker::wake);
        Ok(())
    }
}
// ANCHOR_END: wait

// ANCHOR: async_tcp
/// A non-blocking TCP stream whose reads and writes are futures.
#[derive(Debug)]
pub struct AsyncTcp {
    stream: TcpStream,
    token: Token,
    reactor: Rc<Reactor>,
}

impl AsyncTcp {
    /// Starts a connect and returns before it is done, as chapter 2 does.
    pub fn connect(reactor: &Rc<Reactor>, addr: SocketAddr) -> io::Result<AsyncTcp> {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_nonblocking(true)?;
        match socket.connect(&addr.into()) {
            Err(error) if error.raw_os_error() != Some(libc::EINPROGRESS) => return Err(error),
            _ => {}
        }
        Ok(AsyncTcp {
            stream: socket.into(),
            token: reactor.token(),
            reactor: Rc::clone(reactor),
        })
    }
}
// ANCHOR_END: async_tcp

// ANCHOR: poll_io
impl AsyncTcp {
    /// Every future below is this: try the system call; if the kernel says
    /// it would block, arm the socket with this task's waker and say
    /// `Pending`. Nothing else ever polls us again, so arming is not optional.
    fn poll_io<T>(
        &self,
        cx: &mut Context<'_>,
        interest: Interest,
        mut op: impl FnMut(&TcpStream) -> io::Result<T>,
    ) -> task::Poll<io::Result<T>> {
        loop {
            match op(&self.stream) {
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    let armed = self
                        .reactor
                        .arm(&self.stream, self.token, interest, cx.waker());
                    return match armed {
                        Ok(()) => task::Poll::Pending,
                        Err(error) => task::Poll::Ready(Err(error)),
                    };
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                result => return task::Poll::Ready(result),
            }
        }
    }
}
// ANCHOR_END: poll_io

// ANCHOR: ops
impl AsyncTcp {
    /// Done once the socket has a peer; `SO_ERROR` says if the connect failed.
    pub async fn connected(&self) -> io::Result<()> {
        let done = |stream: &TcpStream| match stream.take_error()? {
            Some(error) => Err(error),
            None => stream.peer_addr().map(drop).map_err(|error| {
                if error.raw_os_error() == Some(libc::ENOTCONN) {
                    io::ErrorKind::WouldBlock.into()
                } else {
                    error
                }
            }),
        };
        poll_fn(|cx| self.poll_io(cx, Interest::WRITABLE, done)).await
    }

    pub async fn write_all(&self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            let write = |mut stream: &TcpStream| stream.write(bytes);
            match poll_fn(|cx| self.poll_io(cx, Interest::WRITABLE, write)).await? {
                0 => return Err(io::ErrorKind::WriteZero.into()),
                n => bytes = &bytes[n..],
            }
        }
        Ok(())
    }

    pub async fn read(&self, buffer: &mut [u8]) -> io::Result<usize> {
        poll_fn(|cx| self.poll_io(cx, Interest::READABLE, |mut stream| stream.read(buffer))).await
    }
}

impl Drop for AsyncTcp {
    /// Deregistered while the fd is still ours; the stream closes after this.
    fn drop(&mut self) {
        self.reactor.forget(&self.stream, self.token);
    }
}
// ANCHOR_END: ops
