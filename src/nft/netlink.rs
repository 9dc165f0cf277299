//! Pure netlink framing: split buffers into messages and attributes, build requests (nftables
//! and rtnetlink alike).
//!
//! Used by the transport to read ACKs and errors back by sequence number, and by the status
//! check to read our table back from the kernel. No I/O and no `unsafe` here.

/// `NLMSG_ERROR`: an ACK (error 0) or an error.
pub const NLMSG_ERROR: u16 = 2;
/// `NLMSG_DONE`: the end of a dump.
pub const NLMSG_DONE: u16 = 3;
/// The nfnetlink subsystem of nftables.
pub const NFNL_SUBSYS_NFTABLES: u16 = 10;
/// `NFT_MSG_NEWTABLE` (also what a table dump returns).
pub const NFT_MSG_NEWTABLE: u16 = 0;
/// `NFT_MSG_GETTABLE`.
pub const NFT_MSG_GETTABLE: u16 = 1;
/// `NFT_MSG_NEWCHAIN`.
pub const NFT_MSG_NEWCHAIN: u16 = 3;
/// `NFT_MSG_GETCHAIN`.
pub const NFT_MSG_GETCHAIN: u16 = 4;
/// `NFT_MSG_NEWRULE`.
pub const NFT_MSG_NEWRULE: u16 = 6;
/// `NFT_MSG_GETRULE`.
pub const NFT_MSG_GETRULE: u16 = 7;
/// `NFT_MSG_NEWSET`.
pub const NFT_MSG_NEWSET: u16 = 9;
/// `NFT_MSG_GETSET`.
pub const NFT_MSG_GETSET: u16 = 10;
/// `NFT_MSG_NEWSETELEM`.
pub const NFT_MSG_NEWSETELEM: u16 = 12;
/// `NFT_MSG_GETSETELEM`.
pub const NFT_MSG_GETSETELEM: u16 = 13;
/// `NFT_MSG_NEWGEN`: the ruleset's generation (the answer to `GETGEN`, and the echo of a
/// commit).
pub const NFT_MSG_NEWGEN: u16 = 15;
/// `NFT_MSG_GETGEN`.
pub const NFT_MSG_GETGEN: u16 = 16;

const NLA_TYPE_MASK: u16 = 0x3fff;

/// One netlink message, borrowed from a receive or batch buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Message<'a> {
    /// `nlmsg_type`.
    pub ty: u16,
    /// `nlmsg_flags`.
    pub flags: u16,
    /// `nlmsg_seq`.
    pub seq: u32,
    /// `nlmsg_pid`.
    pub pid: u32,
    /// Everything after the 16-byte header.
    pub payload: &'a [u8],
    /// The whole message, header included.
    pub raw: &'a [u8],
}

impl<'a> Message<'a> {
    /// For `NLMSG_ERROR`: the (negative) errno, 0 for an ACK.
    pub fn error_code(&self) -> Option<i32> {
        if self.ty != NLMSG_ERROR {
            return None;
        }
        let b = self.payload.get(..4)?;
        Some(i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
    }
    /// For nftables messages: the `NFT_MSG_*` type, or `None` for other subsystems.
    pub fn nft_type(&self) -> Option<u16> {
        (self.ty >> 8 == NFNL_SUBSYS_NFTABLES).then_some(self.ty & 0xff)
    }
    /// For nftables messages: `res_id` of the `nfgenmsg`, in which the kernel puts the low
    /// 16 bits of the ruleset generation it answered from.
    pub fn nft_res_id(&self) -> Option<u16> {
        self.nft_type()?;
        let b = self.payload.get(2..4)?;
        Some(u16::from_be_bytes([b[0], b[1]]))
    }
    /// For nftables messages: the attributes after the 4-byte `nfgenmsg`.
    pub fn nft_attrs(&self) -> Vec<Attr<'a>> {
        self.payload.get(4..).map(attrs).unwrap_or_default()
    }
}

/// Splits a buffer into messages. A truncated tail is ignored (and reported by `rest`).
pub fn messages(buf: &[u8]) -> Vec<Message<'_>> {
    let mut out = Vec::new();
    let mut off = 0usize;
    while buf.len() >= off + 16 {
        let h = &buf[off..off + 16];
        let len = u32::from_ne_bytes([h[0], h[1], h[2], h[3]]) as usize;
        if len < 16 || off + len > buf.len() {
            break;
        }
        out.push(Message {
            ty: u16::from_ne_bytes([h[4], h[5]]),
            flags: u16::from_ne_bytes([h[6], h[7]]),
            seq: u32::from_ne_bytes([h[8], h[9], h[10], h[11]]),
            pid: u32::from_ne_bytes([h[12], h[13], h[14], h[15]]),
            payload: &buf[off + 16..off + len],
            raw: &buf[off..off + len],
        });
        off += align4(len);
    }
    out
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// One attribute: its type (flags stripped) and its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attr<'a> {
    /// The type without `NLA_F_NESTED` and `NLA_F_NET_BYTEORDER`.
    pub ty: u16,
    /// The data after the 4-byte header.
    pub data: &'a [u8],
}

impl<'a> Attr<'a> {
    /// The data as nested attributes.
    pub fn nested(&self) -> Vec<Attr<'a>> {
        attrs(self.data)
    }
    /// The data as a NUL-terminated string.
    pub fn str(&self) -> Option<&'a str> {
        let d = self.data.strip_suffix(&[0]).unwrap_or(self.data);
        std::str::from_utf8(d).ok()
    }
    /// The data as a big-endian u32 (netlink's nftables attributes are network order).
    pub fn be_u32(&self) -> Option<u32> {
        let b: [u8; 4] = self.data.get(..4)?.try_into().ok()?;
        Some(u32::from_be_bytes(b))
    }
}

/// Splits attribute data into attributes. Stops at the first malformed header.
pub fn attrs(buf: &[u8]) -> Vec<Attr<'_>> {
    try_attrs(buf).unwrap_or_else(|partial| partial)
}

/// Splits attribute data; `Err` carries what parsed when the buffer is not exactly a sequence
/// of well-formed attributes.
fn try_attrs(buf: &[u8]) -> Result<Vec<Attr<'_>>, Vec<Attr<'_>>> {
    let mut out = Vec::new();
    let mut off = 0usize;
    while off < buf.len() {
        if buf.len() < off + 4 {
            return Err(out);
        }
        let len = u16::from_ne_bytes([buf[off], buf[off + 1]]) as usize;
        let ty = u16::from_ne_bytes([buf[off + 2], buf[off + 3]]) & NLA_TYPE_MASK;
        if len < 4 || off + len > buf.len() {
            return Err(out);
        }
        out.push(Attr {
            ty,
            data: &buf[off + 4..off + len],
        });
        off += align4(len);
    }
    if off == buf.len() {
        Ok(out)
    } else {
        Err(out)
    }
}

/// The attributes of `buf` one by one, without collecting them; stops at the first
/// malformed header.
pub fn attr_iter(buf: &[u8]) -> impl Iterator<Item = Attr<'_>> {
    let mut off = 0usize;
    std::iter::from_fn(move || {
        let h = buf.get(off..off + 4)?;
        let len = u16::from_ne_bytes([h[0], h[1]]) as usize;
        let ty = u16::from_ne_bytes([h[2], h[3]]) & NLA_TYPE_MASK;
        if len < 4 || off + len > buf.len() {
            return None;
        }
        let a = Attr {
            ty,
            data: &buf[off + 4..off + len],
        };
        off += align4(len);
        Some(a)
    })
}

/// Finds the first attribute of a type in attribute data, without collecting them.
pub fn find_in(buf: &[u8], ty: u16) -> Option<Attr<'_>> {
    attr_iter(buf).find(|a| a.ty == ty)
}

/// Finds the first attribute of a type.
pub fn find<'a>(attrs: &[Attr<'a>], ty: u16) -> Option<Attr<'a>> {
    attrs.iter().copied().find(|a| a.ty == ty)
}

/// A canonical text of attribute data: types without flags and in ascending order, nested
/// data opened where it parses as attributes, leaves in hex. Two encodings that differ only in
/// `NLA_F_NESTED` bits give the same text. `skip(path, data)` drops attributes by their type
/// path (outermost first).
pub fn canonical(data: &[u8], skip: &dyn Fn(&[u16], &[u8]) -> bool) -> String {
    let mut s = String::new();
    canonical_append(&mut s, data, skip);
    s
}

/// Appends [`canonical`] of `data` to `s`.
pub fn canonical_append(s: &mut String, data: &[u8], skip: &dyn Fn(&[u16], &[u8]) -> bool) {
    let mut out = Vec::with_capacity(data.len() * 2 + 16);
    canonical_into(&mut out, data, &mut Vec::new(), skip);
    // Only ASCII was written.
    s.push_str(std::str::from_utf8(&out).unwrap_or_default());
}

/// Appends [`canonical`] of `data` to a byte buffer, with `path` as scratch space (empty on
/// entry and on return): for callers that canonicalise many attributes into one text.
pub fn canonical_bytes(
    out: &mut Vec<u8>,
    data: &[u8],
    path: &mut Vec<u16>,
    skip: &dyn Fn(&[u16], &[u8]) -> bool,
) {
    canonical_into(out, data, path, skip);
}

/// How many attributes out of order [`canonical_into`] sorts without allocating.
const INLINE_ATTRS: usize = 8;

fn canonical_into(
    s: &mut Vec<u8>,
    data: &[u8],
    path: &mut Vec<u16>,
    skip: &dyn Fn(&[u16], &[u8]) -> bool,
) {
    // First pass: is it exactly a sequence of attributes, and are they in type order?
    let (mut n, mut off, mut sorted, mut last) = (0usize, 0usize, true, 0u16);
    for a in attr_iter(data) {
        sorted &= a.ty >= last;
        last = a.ty;
        n += 1;
        off += align4(a.data.len() + 4);
    }
    if n == 0 || off != data.len() || data.len() < 4 {
        push_hex(s, data);
        return;
    }
    s.push(b'{');
    let mut emit = |s: &mut Vec<u8>, a: &Attr<'_>| {
        path.push(a.ty);
        if !skip(path, a.data) {
            push_decimal(s, a.ty);
            s.push(b':');
            canonical_into(s, a.data, path, skip);
            s.push(b',');
        }
        path.pop();
    };
    if sorted {
        for a in attr_iter(data) {
            emit(s, &a);
        }
    } else if n <= INLINE_ATTRS {
        // Order of attributes of different types carries no meaning; of one type it may.
        let mut list = [Attr { ty: 0, data: &[] }; INLINE_ATTRS];
        for (slot, a) in list.iter_mut().zip(attr_iter(data)) {
            *slot = a;
        }
        list[..n].sort_by_key(|a| a.ty);
        for a in &list[..n] {
            emit(s, a);
        }
    } else {
        let mut list: Vec<Attr<'_>> = attr_iter(data).collect();
        list.sort_by_key(|a| a.ty);
        for a in &list {
            emit(s, a);
        }
    }
    s.push(b'}');
}

/// Appends `bytes` in lowercase hex.
pub fn push_hex(s: &mut Vec<u8>, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    s.reserve(bytes.len() * 2);
    for b in bytes {
        s.extend_from_slice(&[HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
    }
}

fn push_decimal(s: &mut Vec<u8>, mut v: u16) {
    let mut digits = [0u8; 5];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    s.extend_from_slice(&digits[i..]);
}

/// Builds one nftables request: header, `nfgenmsg` for `family`, then the attributes.
pub fn nft_request(msg: u16, flags: u16, seq: u32, family: u8, attrs: &[(u16, &[u8])]) -> Vec<u8> {
    request(
        (NFNL_SUBSYS_NFTABLES << 8) | msg,
        flags,
        seq,
        &[family, 0, 0, 0],
        attrs,
    )
}

/// Builds one netlink request of type `ty`: header, the family header `header` (padded to 4
/// bytes), then the attributes.
pub fn request(ty: u16, flags: u16, seq: u32, header: &[u8], attrs: &[(u16, &[u8])]) -> Vec<u8> {
    let mut b = vec![0u8; 16];
    b.extend_from_slice(header);
    while b.len() % 4 != 0 {
        b.push(0);
    }
    for (ty, data) in attrs {
        let len = (4 + data.len()) as u16;
        b.extend_from_slice(&len.to_ne_bytes());
        b.extend_from_slice(&ty.to_ne_bytes());
        b.extend_from_slice(data);
        while b.len() % 4 != 0 {
            b.push(0);
        }
    }
    let total = b.len() as u32;
    b[0..4].copy_from_slice(&total.to_ne_bytes());
    b[4..6].copy_from_slice(&ty.to_ne_bytes());
    b[6..8].copy_from_slice(&flags.to_ne_bytes());
    b[8..12].copy_from_slice(&seq.to_ne_bytes());
    b
}

/// A NUL-terminated copy of a string, for string attributes.
pub fn cstr(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_round_trips_through_the_parser() {
        let name = cstr("bitmask");
        let req = nft_request(NFT_MSG_GETRULE, 0x301, 7, 1, &[(1, &name)]);
        let msgs = messages(&req);
        assert_eq!(msgs.len(), 1);
        assert_eq!(msgs[0].nft_type(), Some(NFT_MSG_GETRULE));
        assert_eq!(msgs[0].seq, 7);
        let a = msgs[0].nft_attrs();
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].str(), Some("bitmask"));
    }

    #[test]
    fn canonical_ignores_nested_flags_and_skips_paths() {
        // attr 2 nested (flag set) holding attr 1 = 0x0a; attr 3 = 0x0b
        let inner = [8u8, 0, 1, 0, 0x0a, 0, 0, 0];
        let mut with_flag = vec![12u8, 0, 2, 0x80];
        with_flag.extend_from_slice(&inner);
        with_flag.extend_from_slice(&[8, 0, 3, 0, 0x0b, 0, 0, 0]);
        let mut without = with_flag.clone();
        without[3] = 0;
        let none = |_: &[u16], _: &[u8]| false;
        assert_eq!(canonical(&with_flag, &none), canonical(&without, &none));
        let skip3 = |p: &[u16], _: &[u8]| p == [3];
        assert!(!canonical(&with_flag, &skip3).contains("3:"));
    }

    #[test]
    fn res_id_is_read_big_endian_from_nftables_messages_only() {
        let mut reply = nft_request(NFT_MSG_NEWTABLE, 0, 1, 1, &[]);
        reply[18..20].copy_from_slice(&0x1234u16.to_be_bytes());
        assert_eq!(messages(&reply)[0].nft_res_id(), Some(0x1234));
        let mut done = reply.clone();
        done[4..6].copy_from_slice(&NLMSG_DONE.to_ne_bytes());
        assert_eq!(messages(&done)[0].nft_res_id(), None);
    }

    #[test]
    fn canonical_text_is_stable() {
        // 17 attributes (more than sorted inline), nested ones, a leaf that is no attribute.
        let mut data = Vec::new();
        for ty in (1..=17u16).rev() {
            data.extend_from_slice(&8u16.to_ne_bytes());
            data.extend_from_slice(&ty.to_ne_bytes());
            data.extend_from_slice(&[ty as u8, 0xab, 0, 1]);
        }
        let text = canonical(&data, &|_, _| false);
        assert!(text.starts_with("{1:01ab0001,2:02ab0001,"), "{text}");
        assert!(text.ends_with("17:11ab0001,}"), "{text}");
        assert_eq!(canonical(&[0xde, 0xad], &|_, _| false), "dead");
        assert_eq!(canonical(&[], &|_, _| false), "");
        let nested = [12u8, 0, 0x02, 0x80, 8, 0, 1, 0, 0xff, 0, 0x10, 0x20];
        assert_eq!(canonical(&nested, &|_, _| false), "{2:{1:ff001020,},}");
    }

    #[test]
    fn truncated_buffers_do_not_panic() {
        assert!(messages(&[1, 2, 3]).is_empty());
        assert!(attrs(&[200, 0, 1, 0]).is_empty());
        let _ = canonical(&[255; 7], &|_, _| false);
    }
}
