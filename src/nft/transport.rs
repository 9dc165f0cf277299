//! nft transport: one netfilter socket per command ([`Session`]), on which an encoded
//! batch ([`crate::nft::encode`]) is sent in one datagram and committed by the kernel as one
//! transaction, tables are dumped and the ruleset's generation is asked.
//!
//! A command opens one connection and uses it for everything: the question whether the table
//! exists, the commit, the generation and any dump. A long-lived holder (the guard) keeps a
//! [`Session`] and commits on it again and again: a table created with
//! [`TableFlags::OWNER`] belongs to the socket that created it, so every later change must go
//! through that same socket, and closing it ends the ownership (with [`TableFlags::PERSIST`]
//! the table stays, orphaned).
//!
//! Answers are read by sequence number. The kernel processes a batch completely inside the
//! `sendmsg` that carries it, then sends the errors of the messages it refused (each with its
//! sequence number, whether or not that message asked for an ACK) and the ACK of the batch's
//! last message, which is the only one that asks for one ([`crate::nft::encode`]): that ACK
//! with no error before it means the transaction was committed. Errors are read with
//! `NETLINK_CAP_ACK` (the refused message is not copied back, so an error fits a small
//! buffer however large the message was), and the socket's buffers are sized for the batch
//! and what the kernel echoes back.

use std::ffi::NulError;
use std::io;

use crate::nft::encode::{self, EncodeError};
use crate::nft::netlink::{self, Message};
use crate::nft::ruleset::Ruleset;
use crate::sys;
use crate::sys::netlink::NetlinkSocket;

pub use crate::nft::encode::{Encoded, Mode, TableFlags};

/// Why the kernel was not changed as asked.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// A name held a NUL byte.
    #[error("a table, chain or set name holds a NUL byte: {0}")]
    Name(#[from] NulError),
    /// A rule names a set of the wrong family or one that is not declared (a planning bug).
    #[error("a rule refers to set {0:?}, which the ruleset does not declare for that family")]
    UnknownSet(String),
    /// The netfilter socket could not be opened.
    #[error(
        "could not open a netfilter netlink socket ({0}); is nf_tables available in this kernel?"
    )]
    Open(#[source] io::Error),
    /// Sending failed; nothing was applied.
    #[error("could not send the ruleset to the kernel ({0}); nothing was changed")]
    Send(#[source] io::Error),
    /// Receiving the answer failed.
    #[error("could not read the kernel's answer ({0})")]
    Recv(#[source] io::Error),
    /// The kernel refused one message; the whole transaction was aborted.
    #[error("the kernel refused the ruleset at {what} ({source}); nothing was changed")]
    Rejected {
        /// Which object the refused message built.
        what: String,
        /// The kernel's errno.
        #[source]
        source: io::Error,
    },
    /// A dump request failed.
    #[error("could not read {what} back from the kernel ({source})")]
    Dump {
        /// What was being read.
        what: &'static str,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The kernel's answer to `GETGEN` carried no generation.
    #[error("the kernel did not say which nftables generation it holds")]
    NoGeneration,
    /// Every attempt to read a table saw nftables change in the middle.
    #[error("another program changed nftables {attempts} times while table inet {table} was being read; run the command again when it has settled")]
    Unsettled {
        /// The table.
        table: String,
        /// How many times it was read.
        attempts: u32,
    },
}

impl From<EncodeError> for TransportError {
    fn from(e: EncodeError) -> Self {
        match e {
            EncodeError::Name(n) => TransportError::Name(n),
            EncodeError::UnknownSet(s) => TransportError::UnknownSet(s),
        }
    }
}

/// The ruleset generation of a network namespace: the kernel counts every committed nftables
/// transaction, whoever sent it. A table read at the generation our commit produced is what we
/// committed; a later generation means that someone committed after us.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Generation(pub u32);

impl Generation {
    /// The low 16 bits, as the `res_id` of every nftables reply carries them.
    pub fn res_id(self) -> u16 {
        (self.0 & 0xffff) as u16
    }
}

impl std::fmt::Display for Generation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The generation in a `NEWGEN` message (`NFTA_GEN_ID`), if it is one.
pub fn generation_of(msg: &Message<'_>) -> Option<Generation> {
    if msg.nft_type() != Some(netlink::NFT_MSG_NEWGEN) {
        return None;
    }
    const NFTA_GEN_ID: u16 = 1;
    netlink::find(&msg.nft_attrs(), NFTA_GEN_ID)
        .and_then(|a| a.be_u32())
        .map(Generation)
}

/// Encodes the replacement batch for `rs`, with `comment` on the table.
pub fn encode_replace(rs: &Ruleset, comment: &str) -> Result<Encoded, TransportError> {
    Ok(encode::ruleset(rs, Mode::Replace, comment)?)
}

/// Like [`encode_replace`], the new table created with `flags`. The first `table add` carries
/// no flags, so it never conflicts with the flags of the table it replaces; the kernel still
/// refuses the whole batch (EPERM) when another socket owns that table.
pub fn encode_replace_flagged(
    rs: &Ruleset,
    comment: &str,
    flags: TableFlags,
) -> Result<Encoded, TransportError> {
    Ok(encode::ruleset_flagged(rs, Mode::Replace, comment, flags)?)
}

/// Encodes a batch that creates table `rs.table`, with `comment`, and fails with EEXIST if
/// it exists.
pub fn encode_create(rs: &Ruleset, comment: &str) -> Result<Encoded, TransportError> {
    Ok(encode::ruleset(rs, Mode::Create, comment)?)
}

/// Like [`encode_create`], the table created with `flags`.
pub fn encode_create_flagged(
    rs: &Ruleset,
    comment: &str,
    flags: TableFlags,
) -> Result<Encoded, TransportError> {
    Ok(encode::ruleset_flagged(rs, Mode::Create, comment, flags)?)
}

/// Encodes one `table add` of the existing table `inet NAME` with `flags` and nothing else:
/// with [`TableFlags::OWNER_PERSIST`] it makes the sending socket the owner of an orphaned
/// table (one whose owner closed its socket) without touching its contents.
pub fn encode_adopt(name: &str, flags: TableFlags) -> Result<Encoded, TransportError> {
    Ok(encode::adopt(name, flags)?)
}

/// Encodes the removal of table `name` (add + delete: never fails because it is absent).
pub fn encode_remove(name: &str) -> Result<Encoded, TransportError> {
    Ok(encode::remove(name)?)
}

/// The receive buffer: netlink hands over one message batch (skb) per read; the kernel keeps
/// dump batches under 32 KiB and notifications under a page, and (with `NETLINK_CAP_ACK`)
/// errors are tiny.
const RECV_BUFFER: usize = 64 << 10;

/// The socket buffers the kernel gives by default (`net.core.{r,w}mem_default`); larger
/// batches and echoes need more.
const DEFAULT_BUFFER: usize = 208 << 10;

/// Sequence numbers of requests other than batches start here, far from a batch's.
const REQUEST_SEQ: u32 = 1 << 30;

/// How long one receive may wait: the kernel answers inside the request's own `sendmsg`, so
/// this only bounds a kernel that never answers.
const RECV_TIMEOUT_SECS: i64 = 30;

/// `NLM_F_DUMP`.
const NLM_F_DUMP: u16 = 0x300;
/// `NLM_F_DUMP_INTR`: the ruleset changed while the dump was being made.
const NLM_F_DUMP_INTR: u16 = 0x10;

/// What a committed batch left: the generation it produced and whether the echo is whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Committed {
    /// The generation the commit produced, as the kernel echoed it (`None` if it did not).
    pub generation: Option<Generation>,
    /// Whether every echoed object arrived (the socket's queue never overflowed).
    pub echo_complete: bool,
}

/// One netfilter netlink socket, for everything one command (or a long-lived holder such as
/// the guard) asks of nftables: commits, dumps and the generation.
///
/// A table created with [`TableFlags::OWNER`] belongs to the session that created it: only
/// it may change or delete the table, and dropping the session ends the ownership. The
/// socket is close-on-exec (a child holding it would keep a table owned), and belongs to the
/// network namespace of the thread that opened it.
///
/// It joins no multicast group, so everything it
/// receives answers its own requests (a holder that wants nftables' change notifications
/// opens another socket for them). Requests are answered in full before the next is sent, so
/// a session can be kept and used again and again, from one thread at a time.
///
/// ```no_run
/// use bitmask_root::nft::transport::{self, Session};
/// # fn demo(rs: &bitmask_root::nft::ruleset::Ruleset) -> Result<(), transport::TransportError> {
/// let mut conn = Session::open()?; // in the calling thread's network namespace
/// let before = conn.generation()?;
/// let committed = conn.commit(&transport::encode_replace(rs, "comment")?)?;
/// assert!(committed.is_some_and(|g| g > before));
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Session {
    socket: NetlinkSocket,
    buf: Vec<u8>,
    seq: u32,
    sndbuf: usize,
    rcvbuf: usize,
}

/// What one read of a request's answer is waiting for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Until {
    /// `NLMSG_DONE` (a dump).
    Done,
    /// One reply (a `GET` of one object, or `GETGEN`).
    One,
}

impl Session {
    /// Opens the socket of the calling thread's network namespace.
    pub fn open() -> Result<Session, TransportError> {
        let socket =
            NetlinkSocket::open(sys::netlink::NETLINK_NETFILTER).map_err(TransportError::Open)?;
        // Bound now, so that the port id (the owner of the tables it creates) is known.
        socket.bind().map_err(TransportError::Open)?;
        sys::cap_acks(&socket).map_err(TransportError::Open)?;
        sys::set_receive_timeout(&socket, RECV_TIMEOUT_SECS).map_err(TransportError::Open)?;
        Ok(Session {
            socket,
            buf: Vec::with_capacity(RECV_BUFFER),
            seq: REQUEST_SEQ,
            sndbuf: DEFAULT_BUFFER,
            rcvbuf: DEFAULT_BUFFER,
        })
    }

    /// Makes the socket's buffers hold at least `snd` and `rcv` bytes (one `setsockopt` each
    /// only when the default is too small).
    fn ensure_buffers(&mut self, snd: usize, rcv: usize) -> io::Result<()> {
        if snd > self.sndbuf || rcv > self.rcvbuf {
            let (snd, rcv) = (snd.max(self.sndbuf), rcv.max(self.rcvbuf));
            sys::size_socket_buffers(&self.socket, rcv, snd)?;
            (self.sndbuf, self.rcvbuf) = (snd, rcv);
        }
        Ok(())
    }

    /// The socket's netlink port id: what the kernel records as the owner of the tables it
    /// creates with [`TableFlags::OWNER`].
    pub fn portid(&self) -> u32 {
        self.socket.portid().unwrap_or(0)
    }

    /// Like [`dump`], through this session's socket.
    pub fn dump(
        &mut self,
        request: &[u8],
        what: &'static str,
    ) -> Result<Vec<Vec<u8>>, TransportError> {
        let mut attempt = 0;
        loop {
            let (messages, consistent) = self.request(request, what)?;
            attempt += 1;
            if consistent || attempt == 3 {
                return Ok(messages);
            }
        }
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1).max(REQUEST_SEQ);
        self.seq
    }

    /// The current ruleset generation (one `GETGEN`).
    pub fn generation(&mut self) -> Result<Generation, TransportError> {
        let seq = self.next_seq();
        let req = netlink::nft_request(netlink::NFT_MSG_GETGEN, encode::NLM_F_REQUEST, seq, 0, &[]);
        let mut generation = None;
        self.exchange(&req, seq, Until::One, "the ruleset generation", &mut |m| {
            generation = generation_of(m).or(generation);
        })?;
        generation.ok_or(TransportError::NoGeneration)
    }

    /// Sends a `GET` request for one object and hands its answer to `on_msg`; an object that
    /// does not exist (ENOENT) is no answer.
    pub fn get(
        &mut self,
        msg: u16,
        family: u8,
        attrs: &[(u16, &[u8])],
        what: &'static str,
        on_msg: &mut dyn FnMut(&Message<'_>),
    ) -> Result<(), TransportError> {
        let seq = self.next_seq();
        let req = netlink::nft_request(msg, encode::NLM_F_REQUEST, seq, family, attrs);
        self.exchange(&req, seq, Until::One, what, on_msg).map(drop)
    }

    /// Dumps (`NLM_F_DUMP`) and hands every message to `on_msg`. Returns whether the kernel
    /// vouched for the dump's consistency (no `NLM_F_DUMP_INTR`). ENOENT is an empty dump.
    pub fn dump_with(
        &mut self,
        msg: u16,
        family: u8,
        attrs: &[(u16, &[u8])],
        what: &'static str,
        on_msg: &mut dyn FnMut(&Message<'_>),
    ) -> Result<bool, TransportError> {
        let seq = self.next_seq();
        let req = netlink::nft_request(msg, encode::NLM_F_REQUEST | NLM_F_DUMP, seq, family, attrs);
        self.exchange(&req, seq, Until::Done, what, on_msg)
    }

    /// Sends a request built by the caller (its own sequence number and flags: a dump with
    /// `NLM_F_DUMP`, or one object) and collects every reply message's bytes.
    pub fn request(
        &mut self,
        request: &[u8],
        what: &'static str,
    ) -> Result<(Vec<Vec<u8>>, bool), TransportError> {
        let Some(first) = netlink::messages(request).first().copied() else {
            return Err(TransportError::Dump {
                what,
                source: io::Error::from(io::ErrorKind::InvalidInput),
            });
        };
        let until = if first.flags & NLM_F_DUMP == NLM_F_DUMP {
            Until::Done
        } else {
            Until::One
        };
        let mut out = Vec::new();
        let consistent = self.exchange(request, first.seq, until, what, &mut |m| {
            out.push(m.raw.to_vec())
        })?;
        Ok((out, consistent))
    }

    /// Sends `request` (sequence number `seq`) and reads its answer until `until`.
    fn exchange(
        &mut self,
        request: &[u8],
        seq: u32,
        until: Until,
        what: &'static str,
        on_msg: &mut dyn FnMut(&Message<'_>),
    ) -> Result<bool, TransportError> {
        let fail = |source| TransportError::Dump { what, source };
        self.socket.send(&[request]).map_err(fail)?;
        let mut consistent = true;
        loop {
            let n = self.socket.recv(&mut self.buf).map_err(fail)?;
            if n > self.buf.len() {
                return Err(fail(too_large(n)));
            }
            for msg in netlink::messages(&self.buf) {
                if msg.seq != seq {
                    continue;
                }
                if msg.flags & NLM_F_DUMP_INTR != 0 {
                    consistent = false;
                }
                match msg.ty {
                    netlink::NLMSG_DONE => return Ok(consistent),
                    netlink::NLMSG_ERROR => {
                        return match msg.error_code() {
                            Some(0) | None => Ok(consistent),
                            Some(e) if -e == libc::ENOENT => Ok(consistent),
                            Some(e) => Err(fail(io::Error::from_raw_os_error(-e))),
                        }
                    }
                    _ => {
                        on_msg(&msg);
                        if until == Until::One {
                            return Ok(consistent);
                        }
                    }
                }
            }
        }
    }

    /// Sends an encoded batch in one datagram and reads the kernel's answer. On
    /// `Err(Rejected)` the kernel aborted the whole transaction. On success, returns the
    /// generation the commit produced, as the kernel echoed it (`None` if it did not).
    pub fn commit(&mut self, enc: &Encoded) -> Result<Option<Generation>, TransportError> {
        Ok(self.commit_echo(enc, &mut |_| {})?.generation)
    }

    /// [`Session::commit`], handing every object the kernel echoes for the batch (in the
    /// order it committed them) to `on_echo`.
    pub fn commit_echo(
        &mut self,
        enc: &Encoded,
        on_echo: &mut dyn FnMut(&Message<'_>),
    ) -> Result<Committed, TransportError> {
        let len = enc.len();
        // The echo (the table, sets, chains and rules, not the elements) is smaller than the
        // batch, in page-sized notifications; the default buffers hold it for small batches.
        self.ensure_buffers(len + (64 << 10), len * 2 + (64 << 10))
            .map_err(TransportError::Open)?;
        let sent = self
            .socket
            .send(&enc.parts())
            .map_err(TransportError::Send)?;
        if sent != len {
            return Err(TransportError::Send(io::Error::other(format!(
                "sent {sent} of {len} bytes"
            ))));
        }
        if !enc.has_objects() {
            return Ok(Committed {
                generation: None,
                echo_complete: true,
            });
        }
        let last = enc.last_seq();
        let mut committed = None;
        let mut refused: Option<TransportError> = None;
        let mut lost: Option<io::Error> = None;
        let mut acked = false;
        loop {
            // The kernel queues its whole answer before sendmsg returns: once something was
            // refused or lost, take what is left without waiting, so that the socket is
            // clean for the next request.
            let received = if refused.is_some() || lost.is_some() {
                self.socket.recv_nowait(&mut self.buf)
            } else {
                self.socket.recv(&mut self.buf).map(Some)
            };
            let n = match received {
                Ok(Some(n)) => n,
                Ok(None) => break,
                // The receive queue overflowed: some echoed objects (or the ACK) were dropped.
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    lost = Some(e);
                    continue;
                }
                Err(_) if refused.is_some() || lost.is_some() => break,
                Err(e) => return Err(TransportError::Recv(e)),
            };
            if n > self.buf.len() {
                return Err(TransportError::Recv(too_large(n)));
            }
            let mut done = false;
            for msg in netlink::messages(&self.buf) {
                if let Some(g) = generation_of(&msg) {
                    committed = Some(g);
                    continue;
                }
                match msg.error_code() {
                    Some(0) => {
                        acked |= msg.seq == last;
                        done |= msg.seq == last;
                    }
                    Some(e) => {
                        if refused.is_none() {
                            refused = Some(TransportError::Rejected {
                                what: enc
                                    .label(msg.seq)
                                    .unwrap_or_else(|| "the batch boundary".to_string()),
                                source: io::Error::from_raw_os_error(-e),
                            });
                        }
                        done |= msg.seq == last;
                    }
                    // Set elements are echoed with sequence number 0.
                    None if msg.nft_type().is_some() && (msg.seq == 0 || enc.contains(msg.seq)) => {
                        on_echo(&msg)
                    }
                    None => {}
                }
            }
            if done {
                break;
            }
        }
        match (refused, lost) {
            (Some(e), _) => Err(e),
            (None, Some(e)) if !acked => Err(TransportError::Recv(e)),
            (None, lost) => Ok(Committed {
                generation: committed,
                echo_complete: lost.is_none(),
            }),
        }
    }
}

fn too_large(n: usize) -> io::Error {
    io::Error::other(format!(
        "an answer of {n} bytes did not fit the {RECV_BUFFER}-byte buffer"
    ))
}

/// Sends an encoded batch on a connection of its own; see [`Session::commit`].
pub fn commit(enc: &Encoded) -> Result<Option<Generation>, TransportError> {
    Session::open()?.commit(enc)
}

/// The current ruleset generation of the calling thread's namespace (one `GETGEN` on a
/// connection of its own).
pub fn generation() -> Result<Generation, TransportError> {
    Session::open()?.generation()
}

/// Sends one request (a dump, or a `GET` of one object) on a connection of its own and
/// collects every reply message's bytes (one Vec per message).
///
/// A dump that the kernel marks inconsistent (`NLM_F_DUMP_INTR`: the ruleset changed while it
/// was being read) is read again, up to three times.
pub fn dump(request: &[u8], what: &'static str) -> Result<Vec<Vec<u8>>, TransportError> {
    let mut conn = Session::open().map_err(|e| match e {
        TransportError::Open(source) => TransportError::Dump { what, source },
        other => other,
    })?;
    conn.dump(request, what)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_last_object_asks_for_an_ack_and_the_first_for_the_generation() {
        let rs = crate::email::plan(1000);
        for mode in [Mode::Create, Mode::Replace] {
            let enc = encode::ruleset(&rs, mode, "c").expect("encode");
            let bytes = enc.bytes();
            let msgs = netlink::messages(&bytes);
            assert_eq!(msgs.len(), enc.messages());
            let acked: Vec<u32> = msgs
                .iter()
                .filter(|m| m.flags & encode::NLM_F_ACK != 0)
                .map(|m| m.seq)
                .collect();
            assert_eq!(acked, vec![enc.last_seq()]);
            assert_eq!(msgs[msgs.len() - 2].seq, enc.last_seq());
            assert!(msgs[1].flags & encode::NLM_F_ECHO != 0, "{mode:?}");
            let seqs: Vec<u32> = msgs.iter().map(|m| m.seq).collect();
            let mut sorted = seqs.clone();
            sorted.sort();
            sorted.dedup();
            assert_eq!(seqs, sorted, "unique, ascending");
        }
        let rm = encode_remove("bitmask").expect("encode");
        let bytes = rm.bytes();
        let msgs = netlink::messages(&bytes);
        assert_eq!(msgs.len(), 4);
        assert!(msgs[1].flags & encode::NLM_F_ECHO != 0);
        assert_eq!(msgs[2].flags & encode::NLM_F_ACK, encode::NLM_F_ACK);
    }

    #[test]
    fn errors_name_the_refused_object() {
        let rs = crate::email::plan(1000);
        let enc = encode_create(&rs, "c").expect("encode");
        let bytes = enc.bytes();
        let labels: Vec<String> = netlink::messages(&bytes)
            .iter()
            .map(|m| enc.label(m.seq).expect("label"))
            .collect();
        assert_eq!(labels[0], "the batch boundary");
        assert_eq!(labels[1], "table inet bitmask_email");
        assert_eq!(labels[2], "chain input");
        assert_eq!(
            labels[4],
            "rule 1 of chain input (iifname \"lo\" tcp dport 1984 accept)"
        );
        assert_eq!(enc.label(0), None);
    }

    #[test]
    fn a_newgen_message_carries_the_generation() {
        let id = 0x0001_0203u32.to_be_bytes();
        let msg = netlink::nft_request(netlink::NFT_MSG_NEWGEN, 0, 1, 0, &[(1, &id)]);
        let parsed = netlink::messages(&msg);
        assert_eq!(generation_of(&parsed[0]), Some(Generation(0x0001_0203)));
        assert_eq!(Generation(0x0001_0203).res_id(), 0x0203);
        let table = netlink::nft_request(netlink::NFT_MSG_NEWTABLE, 0, 1, 0, &[(1, &id)]);
        assert_eq!(generation_of(&netlink::messages(&table)[0]), None);
    }
}
