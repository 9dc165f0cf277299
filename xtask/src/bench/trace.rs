//! What one command asks of the kernel, counted from an strace log: system calls (strace's own
//! summary, `-C`), netlink sockets opened, and netlink datagrams and messages each way (from
//! the data strace dumps for every send and receive, `-e write=all -e read=all`, walked
//! message by message).

/// The counts of one traced command.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// System calls, of every process of the command (strace's summary total).
    pub syscalls: u64,
    /// `execve` calls that succeeded (the command itself included).
    pub execs: u64,
    /// Netlink sockets opened.
    pub sockets: u64,
    /// Datagrams sent (`sendmsg`, `sendto`, `send`).
    pub sends: u64,
    /// Datagrams received (`recvmsg`, `recvfrom`, `recv`), empty reads not counted.
    pub recvs: u64,
    /// Netlink messages in the datagrams sent.
    pub sent: u64,
    /// Netlink messages in the datagrams received.
    pub received: u64,
}

/// The direction of the data strace is dumping.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Dir {
    Send,
    Recv,
}

/// Reads an strace log written with `-f -C -e write=all -e read=all`.
pub fn parse(log: &str) -> Counts {
    let mut c = Counts::default();
    let mut current: Option<(Dir, Vec<u8>)> = None;
    let finish = |c: &mut Counts, cur: &mut Option<(Dir, Vec<u8>)>| {
        if let Some((dir, data)) = cur.take() {
            let n = messages(&data);
            match dir {
                Dir::Send => {
                    c.sends += 1;
                    c.sent += n;
                }
                Dir::Recv if !data.is_empty() => {
                    c.recvs += 1;
                    c.received += n;
                }
                Dir::Recv => {}
            }
        }
    };
    for line in log.lines() {
        // `strace -f` puts the pid first.
        let body = line
            .trim_start_matches(|ch: char| ch.is_ascii_digit())
            .trim_start();
        if let Some(hex) = line.trim_start().strip_prefix("| ") {
            if let Some((_, data)) = current.as_mut() {
                // "00000  14 00 00 00 ...  text |": the offset, then up to 16 bytes.
                let bytes = hex.get(7..7 + 16 * 3 + 1).unwrap_or("");
                data.extend(
                    bytes
                        .split_whitespace()
                        .filter_map(|b| u8::from_str_radix(b, 16).ok()),
                );
            }
            continue;
        }
        if line.trim_start().starts_with("* ") {
            continue;
        }
        if let Some(total) = line.trim_end().strip_suffix(" total") {
            // "100.00  0.000870  7  121  3 total": calls is the fourth column.
            if let Some(n) = total.split_whitespace().nth(3).and_then(|v| v.parse().ok()) {
                c.syscalls = n;
            }
            continue;
        }
        let Some((name, _)) = body.split_once('(') else {
            continue;
        };
        if name.contains(' ') || name.is_empty() {
            continue;
        }
        finish(&mut c, &mut current);
        match name {
            "socket" if body.contains("AF_NETLINK") && !body.ends_with(" = -1") => c.sockets += 1,
            "execve" if body.trim_end().ends_with("= 0") => c.execs += 1,
            "sendmsg" | "sendto" | "send" if !failed(body) => {
                current = Some((Dir::Send, Vec::new()))
            }
            "recvmsg" | "recvfrom" | "recv" if !failed(body) => {
                current = Some((Dir::Recv, Vec::new()))
            }
            _ => {}
        }
    }
    finish(&mut c, &mut current);
    c
}

/// Whether a system call line reports an error (`= -1 EAGAIN ...`).
fn failed(body: &str) -> bool {
    body.rsplit_once(" = ")
        .is_some_and(|(_, ret)| ret.trim_start().starts_with('-'))
}

/// How many netlink messages a datagram holds (walking `nlmsg_len`).
fn messages(data: &[u8]) -> u64 {
    let (mut n, mut off) = (0, 0usize);
    while let Some(h) = data.get(off..off + 4) {
        let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize;
        if len < 16 || off + len > data.len() {
            break;
        }
        n += 1;
        off += (len + 3) & !3;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = r#"24878 execve("/bin/x", ["x"], 0x7ffc /* 3 vars */) = 0
24878 socket(AF_NETLINK, SOCK_RAW|SOCK_CLOEXEC, NETLINK_ROUTE) = 4
24878 sendmsg(4, {msg_name=NULL, msg_iov=[...], msg_iovlen=2}, 0) = 40
 * 20 bytes in buffer 0
 | 00000  14 00 00 00 10 00 01 00  01 00 00 00 00 00 00 00  ................ |
 | 00010  00 00 00 00                                       ....             |
 * 20 bytes in buffer 1
 | 00000  14 00 00 00 11 00 01 00  02 00 00 00 00 00 00 00  ................ |
 | 00010  00 00 00 00                                       ....             |
24878 recvfrom(4, 0x55, 65536, MSG_TRUNC, NULL, NULL) = -1 EAGAIN (Resource temporarily unavailable)
24878 recvfrom(4, [{nlmsg_len=20, nlmsg_type=NLMSG_DONE}, 0], 65536, MSG_TRUNC, NULL, NULL) = 20
 | 00000  14 00 00 00 03 00 02 00  01 00 00 00 2e 61 00 00  .............a.. |
 | 00010  00 00 00 00                                       ....             |
24878 exit_group(0)                     = ?
24878 +++ exited with 0 +++
% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ------------------
 50.00    0.000010           1        10           recvfrom
100.00    0.000870           7       121         3 total
"#;

    #[test]
    fn an_strace_log_is_counted() {
        let c = parse(LOG);
        assert_eq!(
            c,
            Counts {
                syscalls: 121,
                execs: 1,
                sockets: 1,
                sends: 1,
                recvs: 1,
                sent: 2,
                received: 1,
            }
        );
    }
}
