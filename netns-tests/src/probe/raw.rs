//! A raw IP sender: one packet of any IP protocol (253, reserved for experiments, by
//! default), for proving that a firewall covers more than tcp, udp and icmp. Count what
//! arrives with a [`super::tap::Tap`] on the receiving side.

use std::net::{IpAddr, SocketAddr};

use socket2::{Protocol, Type};

use super::udp::SendReport;
use super::SendOpts;
use crate::error::Result;
use crate::netns::Netns;

/// IP protocol 253: "use for experimentation and testing" (RFC 3692).
pub const EXPERIMENTAL_PROTO: u8 = 253;

/// Sends one packet of IP protocol `proto` carrying `payload` from `ns` to `dst` (IPv4 or
/// IPv6; the kernel writes the IP header). Reports whether the kernel accepted the send.
pub fn raw_send(
    ns: &Netns,
    dst: IpAddr,
    proto: u8,
    payload: &[u8],
    opts: &SendOpts,
) -> Result<SendReport> {
    let payload = payload.to_vec();
    let opts = opts.clone();
    ns.run(move || {
        let to = SocketAddr::new(dst, 0);
        let s = opts.socket(&to, Type::RAW, Protocol::from(i32::from(proto)))?;
        let mut r = SendReport::default();
        match s.send_to(&payload, &to.into()) {
            Ok(_) => r.sent += 1,
            Err(e) => {
                r.failed += 1;
                r.first_error = Some(e.to_string());
            }
        }
        Ok(r)
    })?
}
