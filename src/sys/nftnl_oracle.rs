//! The nftnl pieces the old encoder needed beyond the safe `nftnl` API (`log`, `fib daddr
//! type` and `ct direction` expressions, a table with a comment and flags, a set's declared
//! size), kept for the test that compares our encoder with libnftnl
//! ([`crate::nft::encode_oracle`]). Never built outside tests.

use std::ffi::{c_void, CString};
use std::os::raw::c_char;
use std::ptr::NonNull;

use nftnl::expr::Expression;
use nftnl::nftnl_sys as nsys;
use nftnl::{MsgType, NlMsg, ProtoFamily, Rule};

/// A `log` expression (nftnl 0.9 has none): `log prefix "..." level debug`.
pub struct Log {
    /// The prefix (no NUL inside).
    pub prefix: CString,
    /// The syslog level.
    pub level: u32,
}

impl Expression for Log {
    fn to_expr(&self, _rule: &Rule) -> NonNull<nsys::nftnl_expr> {
        // SAFETY: nftnl_expr_alloc takes a NUL-terminated name and returns an owned object or
        // NULL; NULL is turned into a panic exactly as nftnl's own expressions do (allocation
        // failure). nftnl_expr_set_str copies the NUL-terminated prefix, which outlives the
        // call; set_u32 copies the value. The caller (Rule::add_expr) takes ownership.
        unsafe {
            let expr = nsys::nftnl_expr_alloc(c"log".as_ptr());
            let expr = match NonNull::new(expr) {
                Some(e) => e,
                None => std::process::abort(),
            };
            nsys::nftnl_expr_set_str(
                expr.as_ptr(),
                nsys::NFTNL_EXPR_LOG_PREFIX as u16,
                self.prefix.as_ptr(),
            );
            nsys::nftnl_expr_set_u32(expr.as_ptr(), nsys::NFTNL_EXPR_LOG_LEVEL as u16, self.level);
            expr
        }
    }
}

/// `NFTA_FIB_F_DADDR`: look the destination address up (linux/netfilter/nf_tables.h).
const NFTA_FIB_F_DADDR: u32 = 1 << 1;
/// `NFT_FIB_RESULT_ADDRTYPE`: the result is the route type (`RTN_*`) of the address.
const NFT_FIB_RESULT_ADDRTYPE: u32 = 3;

/// Allocates a libnftnl expression by name; aborts on allocation failure, as nftnl's own
/// expressions do.
fn alloc_expr(name: &std::ffi::CStr) -> NonNull<nsys::nftnl_expr> {
    // SAFETY: nftnl_expr_alloc takes a NUL-terminated name (a live CStr) and returns an owned
    // object or NULL; NULL (out of memory, or an unknown name, which ours never are) aborts.
    match NonNull::new(unsafe { nsys::nftnl_expr_alloc(name.as_ptr()) }) {
        Some(e) => e,
        None => std::process::abort(),
    }
}

/// A `fib daddr type` expression (nftnl 0.9 has no `fib`): loads the route type of the
/// destination address (`RTN_LOCAL`, `RTN_UNICAST`, ...) into register 1, as a 32-bit
/// value in host byte order. Compare it with `RTN_LOCAL` for `fib daddr type local`.
pub struct FibDaddrType;

impl Expression for FibDaddrType {
    fn to_expr(&self, _rule: &Rule) -> NonNull<nsys::nftnl_expr> {
        let expr = alloc_expr(c"fib");
        // SAFETY: `expr` is the live object just allocated; set_u32 copies each value. The
        // caller (Rule::add_expr) takes ownership.
        unsafe {
            nsys::nftnl_expr_set_u32(
                expr.as_ptr(),
                nsys::NFTNL_EXPR_FIB_DREG as u16,
                libc::NFT_REG_1 as u32,
            );
            nsys::nftnl_expr_set_u32(
                expr.as_ptr(),
                nsys::NFTNL_EXPR_FIB_RESULT as u16,
                NFT_FIB_RESULT_ADDRTYPE,
            );
            nsys::nftnl_expr_set_u32(
                expr.as_ptr(),
                nsys::NFTNL_EXPR_FIB_FLAGS as u16,
                NFTA_FIB_F_DADDR,
            );
        }
        expr
    }
}

/// A `ct direction` expression (nftnl 0.9's `Conntrack` has no direction key): loads the
/// packet's conntrack direction (0 original, 1 reply; one byte) into register 1. Untracked
/// packets end the rule (no match).
pub struct CtDirection;

impl Expression for CtDirection {
    fn to_expr(&self, _rule: &Rule) -> NonNull<nsys::nftnl_expr> {
        let expr = alloc_expr(c"ct");
        // SAFETY: as for FibDaddrType: a live object, values copied, ownership passed on.
        unsafe {
            nsys::nftnl_expr_set_u32(
                expr.as_ptr(),
                nsys::NFTNL_EXPR_CT_DREG as u16,
                libc::NFT_REG_1 as u32,
            );
            nsys::nftnl_expr_set_u32(
                expr.as_ptr(),
                nsys::NFTNL_EXPR_CT_KEY as u16,
                libc::NFT_CT_DIRECTION as u32,
            );
        }
        expr
    }
}

/// The type used in nft's user-data TLV for a table comment (`NFTNL_UDATA_TABLE_COMMENT`).
const UDATA_TABLE_COMMENT: u8 = 0;

/// A table message that carries a comment (nftnl 0.9's `Table` cannot set user data) and,
/// when asked, table flags.
pub struct CommentedTable {
    table: NonNull<nsys::nftnl_table>,
    exclusive: bool,
}

impl CommentedTable {
    /// A table message with only the name: no flags, no comment. Added to an existing table
    /// it changes nothing whatever that table's flags are (the kernel compares flags only
    /// when the message carries them; nftnl's own `Table` always sends flags 0, which the
    /// kernel refuses, EOPNOTSUPP, for a table that has the owner or persist flag).
    pub fn bare(name: &CString) -> CommentedTable {
        CommentedTable::with_flags(name, None, false, None)
    }

    /// Like [`CommentedTable::new`], with `NFTA_TABLE_FLAGS` set to `flags` (`NFT_TABLE_F_*`:
    /// owner 0x2, persist 0x4; `None` leaves the attribute out) and the comment optional.
    /// Without a comment the message carries no user data, which is what adopting an
    /// existing table sends.
    pub fn with_flags(
        name: &CString,
        comment: Option<&CString>,
        exclusive: bool,
        flags: Option<u32>,
    ) -> CommentedTable {
        let udata = comment.map(|comment| {
            let text = comment.as_bytes_with_nul();
            let mut udata = Vec::with_capacity(text.len() + 2);
            udata.push(UDATA_TABLE_COMMENT);
            udata.push(text.len().min(255) as u8);
            udata.extend_from_slice(&text[..text.len().min(255)]);
            udata
        });
        // SAFETY: alloc returns an owned object or NULL (handled). The setters copy the
        // NUL-terminated name and the user-data bytes (pointer and length from a live Vec).
        unsafe {
            let t = match NonNull::new(nsys::nftnl_table_alloc()) {
                Some(t) => t,
                None => std::process::abort(),
            };
            nsys::nftnl_table_set_u32(
                t.as_ptr(),
                nsys::NFTNL_TABLE_FAMILY as u16,
                ProtoFamily::Inet as u32,
            );
            nsys::nftnl_table_set_str(t.as_ptr(), nsys::NFTNL_TABLE_NAME as u16, name.as_ptr());
            if let Some(flags) = flags {
                nsys::nftnl_table_set_u32(t.as_ptr(), nsys::NFTNL_TABLE_FLAGS as u16, flags);
            }
            if let Some(udata) = &udata {
                nsys::nftnl_table_set_data(
                    t.as_ptr(),
                    nsys::NFTNL_TABLE_USERDATA as u16,
                    udata.as_ptr() as *const c_void,
                    udata.len() as u32,
                );
            }
            CommentedTable {
                table: t,
                exclusive,
            }
        }
    }
}

// SAFETY: `write` only builds a message into the buffer nftnl's Batch hands it (sized by
// nft_nlmsg_maxsize, as for nftnl's own Table), reading our owned table object.
unsafe impl NlMsg for CommentedTable {
    unsafe fn write(&self, buf: *mut c_void, seq: u32, msg_type: MsgType) {
        let ty = match msg_type {
            MsgType::Add => libc::NFT_MSG_NEWTABLE,
            MsgType::Del => libc::NFT_MSG_DELTABLE,
        };
        let mut flags = libc::NLM_F_ACK;
        if self.exclusive && matches!(msg_type, MsgType::Add) {
            flags |= libc::NLM_F_CREATE | libc::NLM_F_EXCL;
        }
        // SAFETY: as above; the header is written at the start of `buf`.
        unsafe {
            let header = nsys::nftnl_nlmsg_build_hdr(
                buf as *mut c_char,
                ty as u16,
                ProtoFamily::Inet as u16,
                flags as u16,
                seq,
            );
            nsys::nftnl_table_nlmsg_build_payload(header, self.table.as_ptr());
        }
    }
}

impl Drop for CommentedTable {
    fn drop(&mut self) {
        // SAFETY: we own the object and free it once.
        unsafe { nsys::nftnl_table_free(self.table.as_ptr()) }
    }
}

/// Declares how many elements a set will hold (`NFTA_SET_DESC_SIZE`, nft's `size N`). The
/// kernel then sizes the hash table once, or picks a fixed-size backend, instead of growing
/// it while (or right after) the elements are inserted; a table that is being rehashed can
/// show an element twice or not at all to a dump that spans several reads.
pub fn set_size<K>(set: &nftnl::set::Set<'_, K>, size: u32) {
    // SAFETY: `as_ptr` is the set's live libnftnl object, owned by `set` for the duration of
    // the call; nftnl_set_set_u32 copies the value.
    unsafe {
        nsys::nftnl_set_set_u32(
            set.as_ptr().as_ptr(),
            nsys::NFTNL_SET_DESC_SIZE as u16,
            size,
        )
    };
}
