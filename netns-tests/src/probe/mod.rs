//! Probes that report what actually happened: senders that run in one namespace and
//! listeners that count arrivals where packets land, in another.
//!
//! Every listener runs on a background thread inside its namespace, polls with a short
//! timeout, stops when dropped, and records each arrival (source, destination, payload).
//! Every sender is bounded in count and time.

pub mod dns;
pub mod icmp;
pub mod raw;
pub mod tap;
pub mod tcp;
pub mod udp;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

use crate::error::{Context, Result};
use crate::netns::{Netns, NsThread};

/// How often background listeners wake up to check whether they should stop.
pub(crate) const POLL: Duration = Duration::from_millis(20);

/// How long to wait for packets that should *not* arrive before concluding they did not.
pub const SETTLE: Duration = Duration::from_millis(250);

/// Options for a sending socket.
#[derive(Debug, Clone, Default)]
pub struct SendOpts {
    /// `SO_BINDTODEVICE` to this interface.
    pub bind_device: Option<String>,
    /// Bind to this local address (and port) before sending.
    pub bind_addr: Option<SocketAddr>,
    /// `SO_BROADCAST`.
    pub broadcast: bool,
    /// Outgoing interface for multicast (`IP_MULTICAST_IF` / `IPV6_MULTICAST_IF`).
    pub multicast_if: Option<String>,
    /// Time bound for connects and replies (default 1 s).
    pub timeout: Option<Duration>,
}

impl SendOpts {
    /// Options with only `SO_BINDTODEVICE` set.
    pub fn device(ifname: &str) -> Self {
        SendOpts {
            bind_device: Some(ifname.to_string()),
            ..Default::default()
        }
    }

    pub(crate) fn timeout(&self) -> Duration {
        self.timeout.unwrap_or(Duration::from_secs(1))
    }

    /// Creates a socket for `dst` with these options applied (in the calling thread's
    /// namespace).
    pub(crate) fn socket(&self, dst: &SocketAddr, ty: Type, proto: Protocol) -> Result<Socket> {
        let domain = Domain::for_address(*dst);
        let s = Socket::new(domain, ty, Some(proto)).context(|| "socket".to_string())?;
        if let Some(dev) = &self.bind_device {
            s.bind_device(Some(dev.as_bytes()))
                .context(|| format!("SO_BINDTODEVICE {dev}"))?;
        }
        if self.broadcast {
            s.set_broadcast(true)
                .context(|| "SO_BROADCAST".to_string())?;
        }
        if let Some(ifname) = &self.multicast_if {
            let idx = crate::sys::if_index(ifname).context(|| format!("ifindex of {ifname}"))?;
            if dst.is_ipv4() {
                crate::sys::set_multicast_if_v4_index(&s, idx)
                    .context(|| "IP_MULTICAST_IF".to_string())?;
            } else {
                s.set_multicast_if_v6(idx)
                    .context(|| "IPV6_MULTICAST_IF".to_string())?;
            }
        }
        if let Some(a) = self.bind_addr {
            s.set_reuse_address(true)
                .context(|| "SO_REUSEADDR".to_string())?;
            s.bind(&a.into()).context(|| format!("bind {a}"))?;
        }
        Ok(s)
    }
}

/// Shared state of a background listener: recorded items and a stop flag.
#[derive(Debug)]
pub(crate) struct Recorder<T> {
    items: Arc<Mutex<Vec<T>>>,
    stop: Arc<AtomicBool>,
    thread: Option<NsThread<()>>,
}

impl<T: Clone + Send + 'static> Recorder<T> {
    /// Starts `body(stop, items)` on a thread inside `ns`. `setup` runs first, inside the
    /// namespace, and its error is returned here (e.g. a failed bind).
    pub(crate) fn start<St, S, B>(ns: &Netns, setup: S, body: B) -> Result<Self>
    where
        St: 'static,
        S: FnOnce() -> Result<St> + Send + 'static,
        B: FnOnce(St, &AtomicBool, &Mutex<Vec<T>>) + Send + 'static,
    {
        let items = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::channel();
        let (i2, s2) = (items.clone(), stop.clone());
        let thread = ns.spawn(move || match setup() {
            Ok(state) => {
                let _ = tx.send(Ok(()));
                body(state, &s2, &i2);
            }
            Err(e) => {
                let _ = tx.send(Err(e));
            }
        })?;
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(())) => Ok(Recorder {
                items,
                stop,
                thread: Some(thread),
            }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(crate::Error::new("listener did not start")),
        }
    }

    /// A copy of everything recorded so far.
    pub(crate) fn items(&self) -> Vec<T> {
        self.items.lock().map(|v| v.clone()).unwrap_or_default()
    }

    /// Number of recorded items matching `pred`.
    pub(crate) fn count_where(&self, pred: impl Fn(&T) -> bool) -> usize {
        self.items
            .lock()
            .map(|v| v.iter().filter(|x| pred(x)).count())
            .unwrap_or(0)
    }

    /// Forgets what was recorded.
    pub(crate) fn clear(&self) {
        if let Ok(mut v) = self.items.lock() {
            v.clear();
        }
    }

    /// Waits until at least `n` matching items were recorded or `timeout` passed; returns
    /// the matching count.
    pub(crate) fn wait_for(&self, n: usize, timeout: Duration, pred: impl Fn(&T) -> bool) -> usize {
        let start = Instant::now();
        loop {
            let c = self.count_where(&pred);
            if c >= n || start.elapsed() >= timeout {
                return c;
            }
            thread::sleep(Duration::from_millis(5));
        }
    }
}

impl<T> Drop for Recorder<T> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Pushes `item` into a shared list.
pub(crate) fn push<T>(items: &Mutex<Vec<T>>, item: T) {
    if let Ok(mut v) = items.lock() {
        v.push(item);
    }
}

/// Whether an I/O error is just a receive timeout.
pub(crate) fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}
