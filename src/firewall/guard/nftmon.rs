//! nftables change notifications: the `NFNLGRP_NFTABLES` multicast group, which the kernel
//! feeds with every object of every committed transaction and a closing `NFT_MSG_NEWGEN`
//! naming the process that committed it. A refused or empty transaction commits nothing and
//! is never notified.

use std::io;

use netlink_sys::{protocols::NETLINK_NETFILTER, AsyncSocket, AsyncSocketExt, TokioSocket};

use super::event::Changer;
use crate::nft::netlink;

/// `NFNLGRP_NFTABLES`.
const NFNLGRP_NFTABLES: u32 = 7;
/// `NFT_MSG_DELTABLE`.
const NFT_MSG_DELTABLE: u16 = 2;
/// `NFT_MSG_NEWGEN`: the end of a committed transaction.
const NFT_MSG_NEWGEN: u16 = 15;
/// `NFPROTO_INET`.
const NFPROTO_INET: u8 = 1;
/// The receive buffer: a `flush ruleset` of a large ruleset notifies every rule.
const RECEIVE_BUFFER: usize = 8 << 20;

/// What the notifications said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// A transaction was committed.
    Commit {
        /// Who committed it.
        by: Changer,
        /// Whether it named the watched table.
        touched: bool,
        /// Whether it deleted the watched table.
        deleted: bool,
    },
    /// Notifications were lost (the socket's buffer overran): anything may have changed.
    Lost,
}

/// A subscription to nftables notifications in the calling thread's network namespace.
pub struct NftMonitor {
    socket: TokioSocket,
    table: String,
    touched: bool,
    deleted: bool,
}

impl NftMonitor {
    /// Subscribes; `table` (an `inet` table) is the one whose changes are flagged.
    pub fn open(table: &str) -> io::Result<NftMonitor> {
        let mut socket = TokioSocket::new(NETLINK_NETFILTER)?;
        socket.socket_mut().bind_auto()?;
        socket.socket_mut().add_membership(NFNLGRP_NFTABLES)?;
        crate::sys::size_socket_buffers(&socket, RECEIVE_BUFFER, 64 << 10)?;
        Ok(NftMonitor {
            socket,
            table: table.to_string(),
            touched: false,
            deleted: false,
        })
    }

    /// Waits for the next datagram and returns the transactions it closes (possibly none: a
    /// transaction's notifications can span several datagrams).
    pub async fn next(&mut self) -> io::Result<Vec<Notice>> {
        match self.socket.recv_from_full().await {
            Ok((buf, _)) => Ok(self.parse(&buf)),
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                self.touched = false;
                self.deleted = false;
                Ok(vec![Notice::Lost])
            }
            Err(e) => Err(e),
        }
    }

    fn parse(&mut self, buf: &[u8]) -> Vec<Notice> {
        let mut out = Vec::new();
        Parser {
            table: &self.table,
            touched: &mut self.touched,
            deleted: &mut self.deleted,
        }
        .parse(buf, &mut out);
        out
    }
}

/// The state carried from one datagram to the next: what the open transaction did so far.
struct Parser<'a> {
    table: &'a str,
    touched: &'a mut bool,
    deleted: &'a mut bool,
}

impl Parser<'_> {
    fn parse(&mut self, buf: &[u8], out: &mut Vec<Notice>) {
        for msg in netlink::messages(buf) {
            match msg.nft_type() {
                Some(NFT_MSG_NEWGEN) => {
                    let a = msg.nft_attrs();
                    // NFTA_GEN_PROC_PID 2 (big-endian), NFTA_GEN_PROC_NAME 3
                    let by = Changer {
                        pid: netlink::find(&a, 2).and_then(|p| p.be_u32()),
                        name: netlink::find(&a, 3)
                            .and_then(|n| n.str())
                            .map(str::to_string),
                    };
                    out.push(Notice::Commit {
                        by,
                        touched: std::mem::take(self.touched),
                        deleted: std::mem::take(self.deleted),
                    });
                }
                Some(ty) => {
                    // Every table, chain, rule, set and element message names its table
                    // in attribute 1.
                    let family = msg.payload.first().copied();
                    let a = msg.nft_attrs();
                    if family == Some(NFPROTO_INET)
                        && netlink::find(&a, 1).and_then(|n| n.str()) == Some(self.table)
                    {
                        *self.touched = true;
                        *self.deleted |= ty == NFT_MSG_DELTABLE;
                    }
                }
                None => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One nftables notification as the kernel frames it.
    fn msg(ty: u16, family: u8, attrs: &[(u16, &[u8])]) -> Vec<u8> {
        netlink::nft_request(ty, 0, 0, family, attrs)
    }

    fn parse(table: &str, buf: &[u8]) -> Vec<Notice> {
        // The parser without a socket: the same code path as `next`.
        let mut touched = false;
        let mut deleted = false;
        let mut out = Vec::new();
        let mut m = Parser {
            table,
            touched: &mut touched,
            deleted: &mut deleted,
        };
        m.parse(buf, &mut out);
        out
    }

    #[test]
    fn transactions_are_split_at_newgen_and_flag_the_watched_table() {
        let ours = netlink::cstr("bitmask");
        let other = netlink::cstr("other");
        let pid = 4242u32.to_be_bytes();
        let name = netlink::cstr("nft");
        let gen = msg(
            NFT_MSG_NEWGEN,
            0,
            &[(1, &[0, 0, 0, 7]), (2, &pid), (3, &name)],
        );
        let mut buf = Vec::new();
        buf.extend(msg(NFT_MSG_DELTABLE, NFPROTO_INET, &[(1, &other)]));
        buf.extend(&gen);
        buf.extend(msg(5, NFPROTO_INET, &[(1, &ours)])); // DELCHAIN of ours
        buf.extend(msg(NFT_MSG_DELTABLE, NFPROTO_INET, &[(1, &ours)]));
        buf.extend(&gen);
        buf.extend(msg(NFT_MSG_DELTABLE, 2, &[(1, &ours)])); // ip bitmask: not ours
        buf.extend(&gen);
        let by = Changer {
            pid: Some(4242),
            name: Some("nft".into()),
        };
        assert_eq!(
            parse("bitmask", &buf),
            vec![
                Notice::Commit {
                    by: by.clone(),
                    touched: false,
                    deleted: false
                },
                Notice::Commit {
                    by: by.clone(),
                    touched: true,
                    deleted: true
                },
                Notice::Commit {
                    by,
                    touched: false,
                    deleted: false
                },
            ]
        );
    }
}
