//! Network change notices: the rtnetlink multicast groups of links, IPv4 and IPv6 addresses
//! and routes, the same events `ip monitor` shows. No polling.

use std::io;

use futures::stream::BoxStream;
use futures::StreamExt;
use rtnetlink::MulticastGroup;

/// The receive buffer: a burst of route changes must not overrun it (an overrun is still
/// reported as a notice).
const RECEIVE_BUFFER: usize = 4 << 20;

/// A subscription to link, address and route notices in the calling thread's network
/// namespace. Needs a tokio runtime (the connection runs as a task).
pub struct NetMonitor {
    /// What a notice carries is not needed: any notice means "read the network again".
    messages: BoxStream<'static, ()>,
    task: tokio::task::JoinHandle<()>,
    _handle: rtnetlink::Handle,
}

impl NetMonitor {
    /// Subscribes.
    pub fn open() -> io::Result<NetMonitor> {
        let (mut conn, handle, messages) = rtnetlink::new_multicast_connection(&[
            MulticastGroup::Link,
            MulticastGroup::Ipv4Ifaddr,
            MulticastGroup::Ipv6Ifaddr,
            MulticastGroup::Ipv4Route,
            MulticastGroup::Ipv6Route,
        ])?;
        crate::sys::size_socket_buffers(conn.socket_mut(), RECEIVE_BUFFER, 64 << 10)?;
        let task = tokio::spawn(conn);
        Ok(NetMonitor {
            messages: messages.map(|_| ()).boxed(),
            task,
            _handle: handle,
        })
    }

    /// Waits for the next notice. `None` when the subscription ended (the caller opens a new
    /// one and reads the network again).
    pub async fn next(&mut self) -> Option<()> {
        self.messages.next().await
    }
}

impl Drop for NetMonitor {
    fn drop(&mut self) {
        self.task.abort();
    }
}
