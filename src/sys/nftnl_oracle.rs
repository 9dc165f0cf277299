//! The nftnl pieces the old encoder needed beyond the safe `nftnl` API (a `log` expression,
//! a table with a comment, a set's declared size), kept for the test that compares our
//! encoder with libnftnl ([`crate::nft::encode_oracle`]). Never built outside tests.

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

/// The type used in nft's user-data TLV for a table comment (`NFTNL_UDATA_TABLE_COMMENT`).
const UDATA_TABLE_COMMENT: u8 = 0;

/// A table message that carries a comment (nftnl 0.9's `Table` cannot set user data).
pub struct CommentedTable {
    table: NonNull<nsys::nftnl_table>,
    exclusive: bool,
}

impl CommentedTable {
    /// An `inet` table named `name` with `comment` (at most 252 bytes, no NUL inside; the
    /// kernel limits user data to 256 bytes). With `exclusive`, adding it fails with EEXIST
    /// when the table exists (`NLM_F_CREATE | NLM_F_EXCL`).
    pub fn new(name: &CString, comment: &CString, exclusive: bool) -> CommentedTable {
        let text = comment.as_bytes_with_nul();
        let mut udata = Vec::with_capacity(text.len() + 2);
        udata.push(UDATA_TABLE_COMMENT);
        udata.push(text.len().min(255) as u8);
        udata.extend_from_slice(&text[..text.len().min(255)]);
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
            nsys::nftnl_table_set_u32(t.as_ptr(), nsys::NFTNL_TABLE_FLAGS as u16, 0);
            nsys::nftnl_table_set_data(
                t.as_ptr(),
                nsys::NFTNL_TABLE_USERDATA as u16,
                udata.as_ptr() as *const c_void,
                udata.len() as u32,
            );
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
