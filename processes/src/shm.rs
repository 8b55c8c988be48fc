//! The shared-memory segment: one memfd mapped `MAP_SHARED`, its header with the robust lock, the
//! layout of the records kept in it, and typed access to them.
//!
//! Everything stored in the segment refers to other records by *segment offset* (never a pointer),
//! so every process can map it anywhere. Offset 0 is the header, so 0 doubles as "none" ([`NIL`]).
//! The layout is drawn in `processes/README.md`; what the records *mean* (queues, the commit,
//! poison and retirement) is the engine's business (`engine.rs`), not this module's.
//!
//! # Access without `unsafe` outside this module
//!
//! This is the only module that turns a segment offset into a reference. Other processes read and
//! write the segment while we do, so nothing here ever hands out a `&mut` into it:
//!
//! - **Records** ([`ChanRec`], [`WaiterRec`], [`Entry`], [`List`], [`SlotCell`]) are `repr(C)`
//!   structs made only of atomics ([`Record`]). [`Segment::rec`] checks bounds and alignment and
//!   gives a shared `&T`; every field is read and written through it. Fields other than the state
//!   words are [`Word`]s, loaded and stored `Relaxed`: they change only under the segment lock (or,
//!   for a waiter's `got`, before the release that publishes them), so the lock's own
//!   acquire and release order them.
//! - **The heap's tag words** are atomics too ([`SharedWords`]): the allocator runs over them, never
//!   over a byte slice of the heap.
//! - **Payload bytes** are copied in and out with `ptr::copy_nonoverlapping` by
//!   [`Segment::write_payload`] and [`Segment::read_payload`], or lent for the length of a closure
//!   by [`Segment::with_payload`]. These rest on the commit protocol's ownership rule: a payload
//!   slot belongs to exactly one process at a time (the writer until it is offered, the reader once
//!   it is handed over), and only its owner touches its bytes.

use crate::futex;
use crate::heap::{HeapError, NextFit, Words};
use cspnet_core::{ClaimWord, Deadline};
use std::cell::UnsafeCell;
use std::mem::{align_of, offset_of, size_of};
use std::os::fd::RawFd;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering, fence};

/// "No record": offset 0 is the header, never a record.
pub(crate) const NIL: u64 = 0;
/// Bytes reserved for the header; the heap starts here.
pub(crate) const HEADER: usize = 4096;
/// Default segment size: room for a 16 MiB payload many times over; sparse, so unused pages cost nothing.
pub(crate) const DEFAULT_SIZE: usize = 256 << 20;
const MAGIC: u64 = u64::from_le_bytes(*b"cspnet01");
/// How many channels one critical section can name for recovery before it names "all".
const TOUCH: usize = 8;
const TOUCH_ALL: u32 = u32::MAX;
/// Tries before sleeping on a held segment lock.
const SPINS: usize = 100;

/// Environment variable: segment size in bytes (suffixes `k`, `m`, `g` accepted). A value that
/// does not parse or is below [`MIN_SIZE`] is ignored with a warning: the default is used.
pub(crate) const ENV_SIZE: &str = "CSPNET_SHM_SIZE";
/// The smallest segment: the header and one page of heap.
pub(crate) const MIN_SIZE: usize = HEADER + 4096;
/// Environment variable: the inherited memfd of a re-executed child.
pub(crate) const ENV_FD: &str = "CSPNET_SHM_FD";

/// A 64-bit field of a shared record. See the module docs for why `Relaxed` is enough.
#[repr(transparent)]
pub(crate) struct Word(AtomicU64);

impl Word {
    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    pub(crate) fn set(&self, value: u64) {
        self.0.store(value, Ordering::Relaxed);
    }
}

/// A 32-bit field of a shared record, like [`Word`].
#[repr(transparent)]
pub(crate) struct Word32(AtomicU32);

impl Word32 {
    pub(crate) fn get(&self) -> u32 {
        self.0.load(Ordering::Relaxed)
    }

    pub(crate) fn set(&self, value: u32) {
        self.0.store(value, Ordering::Relaxed);
    }
}

/// A type that lives in the segment and is reached through [`Segment::rec`].
///
/// # Safety
///
/// Implementors are `repr(C)` (or `repr(transparent)`) and made only of atomics, so every bit
/// pattern is a valid value and a shared reference may coexist with other processes changing the
/// same bytes through their own shared references.
pub(crate) unsafe trait Record {}

// SAFETY: a transparent AtomicU64.
unsafe impl Record for Word {}
// SAFETY: an atomic (a futex word).
unsafe impl Record for AtomicU32 {}
// SAFETY: repr(C), two Words.
unsafe impl Record for List {}
// SAFETY: repr(C), two Words.
unsafe impl Record for SlotCell {}
// SAFETY: repr(C), AtomicU32s, a Word32, Words, an AtomicU64 and Lists.
unsafe impl Record for ChanRec {}
// SAFETY: repr(C), a ClaimWord (a transparent AtomicU32, checked below), AtomicU32s, a SlotCell and
// Words.
unsafe impl Record for WaiterRec {}
// The claim word is core's `#[repr(transparent)]` std `AtomicU32` (loom's stands in only under
// `cfg(loom)`, which builds core's own model alone): one futex word, any bit pattern valid.
const _: () = assert!(
    size_of::<ClaimWord>() == size_of::<AtomicU32>()
        && align_of::<ClaimWord>() == align_of::<AtomicU32>()
);
// SAFETY: repr(C), Words, Word32s and a SlotCell.
unsafe impl Record for Entry {}
// SAFETY: repr(C), a Word, an array of LedgerEntry (two AtomicU64s each) and AtomicU64s.
unsafe impl Record for LedgerRec {}

/// How many distinct channel ends one child's ledger can count.
pub(crate) const LEDGER_ENTRIES: usize = 63;

/// How many writers one child can hold at once in extended reads and still have them let go if
/// it dies (more is only nested or concurrent extended reads in one OS process).
pub(crate) const LEDGER_HOLDING: usize = 4;

/// What one child OS process holds, for its parent to release if it dies (see `ledger.rs`).
#[repr(C)]
pub(crate) struct LedgerRec {
    /// Set once an end did not fit: the parent then falls back to poisoning the census.
    pub(crate) overflow: Word,
    pub(crate) entries: [LedgerEntry; LEDGER_ENTRIES],
    /// The waiter records of the writers the child holds in extended reads (0: a free place),
    /// for its parent to let go if it dies in the middle of one.
    pub(crate) holding: [AtomicU64; LEDGER_HOLDING],
}

/// One channel end kind in a ledger: `key` names it (0: a free entry), `count` is how many the
/// child holds (wrapping; it dips below zero while the parent has not yet added the census).
#[repr(C)]
pub(crate) struct LedgerEntry {
    pub(crate) key: AtomicU64,
    pub(crate) count: AtomicU64,
}

/// The segment header at offset 0. The fields before `next_id` are not atomics and are never
/// reached through [`Segment::rec`] (it refuses offsets below [`RECORDS`]).
#[repr(C)]
struct Header {
    /// Written once by [`Segment::create`] before any other process can see the segment.
    magic: u64,
    size: u64,
    /// Process-shared and robust; only ever used through its pointer by the pthread calls.
    lock: UnsafeCell<libc::pthread_mutex_t>,
    /// Network-wide process id counter.
    next_id: AtomicU64,
    /// Bumped when heap space is freed and someone waits for it without a waiter record.
    heap_seq: AtomicU32,
    heap_waiters: AtomicU32,
    /// Set when a process died inside the allocator: every channel is then poisoned for good.
    broken: AtomicU32,
    in_heap: AtomicU32,
    touch_n: AtomicU32,
    touch: [AtomicU64; TOUCH],
    /// Every live channel record (for recovery), linked through `ChanRec::all_next`.
    chans: List,
    /// Entries of alternations waiting for heap space.
    heapq: List,
}

/// The lowest offset [`Segment::rec`] accepts: the header's atomics start here.
const RECORDS: usize = offset_of!(Header, next_id);
const _: () = assert!(size_of::<Header>() <= HEADER);

/// A doubly linked list of [`Entry`] records, by offset.
#[repr(C)]
pub(crate) struct List {
    pub(crate) head: Word,
    pub(crate) tail: Word,
}

/// A payload in the heap: its offset and length.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Slot {
    pub(crate) off: u64,
    pub(crate) len: u64,
}

/// A [`Slot`] stored in a record (or in a channel's ring buffer).
#[repr(C)]
pub(crate) struct SlotCell {
    off: Word,
    len: Word,
}

impl SlotCell {
    pub(crate) fn get(&self) -> Slot {
        Slot {
            off: self.off.get(),
            len: self.len.get(),
        }
    }

    pub(crate) fn set(&self, slot: Slot) {
        self.off.set(slot.off);
        self.len.set(slot.len);
    }
}

/// Bytes of one ring-buffer slot.
pub(crate) const SLOT_SIZE: usize = size_of::<SlotCell>();

/// A channel's record.
#[repr(C)]
pub(crate) struct ChanRec {
    /// A `cspnet_core::ChannelState` as a number (read without the lock by `Debug` and error
    /// reports).
    pub(crate) state: AtomicU32,
    /// Channel, Reader and Writer handles (in any process) that refer to this record.
    pub(crate) handles: Word32,
    /// Reader and writer ends: a `cspnet_core::Membership`, field for field.
    pub(crate) readers: Word,
    pub(crate) writers: Word,
    /// The most values the buffer holds.
    pub(crate) capacity: Word,
    /// Ring of `buf_cap` [`SlotCell`]s (`NIL` for a rendezvous): it starts small and doubles
    /// when full, up to `capacity`, so a large buffer takes heap only as it fills.
    pub(crate) buf: Word,
    pub(crate) buf_cap: Word,
    pub(crate) buf_head: Word,
    pub(crate) buf_len: Word,
    pub(crate) readq: List,
    pub(crate) writeq: List,
    pub(crate) all_next: Word,
    pub(crate) all_prev: Word,
    /// Core's word (`Carries::word`).
    pub(crate) word: AtomicU64,
    /// Bumped by every `wake_word` and by poison: the futex a `wait_word` sleeps on.
    pub(crate) word_seq: AtomicU32,
    /// Keeps the record a multiple of 8 bytes with no implicit padding.
    pub(crate) word_pad: AtomicU32,
}

/// One blocked operation or alternation: a futex word, followed in the same allocation by room
/// for its [`Entry`] records.
#[repr(C)]
pub(crate) struct WaiterRec {
    /// The waiter's claim (`Waiting`, `Fired(guard)`, `Ended`, `TimedOut`): its futex word, at
    /// offset 0 of the record. A fresh allocation is not `Waiting`: the engine `reset`s it.
    pub(crate) state: ClaimWord,
    /// Nonzero once the waiter has announced that it is about to `futex_wait` on `state` (it
    /// spins first, and often sees its claim without sleeping): a claimer calls `futex_wake`
    /// only then. The engine zeroes it with `state` when it reuses the record. It also keeps
    /// `got` 8-aligned with no implicit padding.
    pub(crate) sleeping: AtomicU32,
    /// The payload handed to a committed input guard.
    pub(crate) got: SlotCell,
    /// Entries in use after the record.
    pub(crate) used: Word,
    /// Nonzero while an extended reader holds this thread's last write: its futex word (the
    /// writer sleeps on it; the reader zeroes it and wakes it).
    pub(crate) hold: AtomicU32,
    /// Keeps `holder` 8-aligned with no implicit padding.
    pub(crate) hold_pad: AtomicU32,
    /// For an extended reader committed while it waited: the record of the writer it holds (set
    /// by that writer before the claim), or `NIL`.
    pub(crate) holder: Word,
    /// The ledger of the child process whose thread this is (`NIL`: none), where a writer that
    /// commits this thread's extended read notes itself as held, before the claim.
    pub(crate) ledger: Word,
}

/// A waiter's registration on one queue.
#[repr(C)]
pub(crate) struct Entry {
    pub(crate) next: Word,
    pub(crate) prev: Word,
    /// The list this entry is linked on (NIL when unlinked).
    pub(crate) list: Word,
    pub(crate) waiter: Word,
    pub(crate) guard: Word32,
    pub(crate) kind: Word32,
    pub(crate) payload: SlotCell,
}

pub(crate) const ENTRY_SIZE: usize = size_of::<Entry>();
pub(crate) const WAITER_SIZE: usize = size_of::<WaiterRec>();
const _: () = assert!(WAITER_SIZE % align_of::<Entry>() == 0 && ENTRY_SIZE % 8 == 0);

/// The mapped segment of this process.
pub(crate) struct Segment {
    base: *mut u8,
    size: usize,
    fd: RawFd,
}

// SAFETY: the segment is a fixed mapping that lives as long as the process; all access to its
// contents goes through atomics, the process-shared lock, or payload copies by their owner.
unsafe impl Send for Segment {}
// SAFETY: as above.
unsafe impl Sync for Segment {}

static SEGMENT: OnceLock<Segment> = OnceLock::new();
static REQUESTED_SIZE: AtomicUsize = AtomicUsize::new(0);

/// Sets the size of the segment to create (overrides `CSPNET_SHM_SIZE`). Returns `false` when the
/// segment already exists (it cannot be resized).
pub(crate) fn request_size(bytes: usize) -> bool {
    REQUESTED_SIZE.store(bytes, Ordering::Relaxed);
    SEGMENT.get().is_none()
}

/// The segment, created on first use (a re-executed child has attached its parent's already, in
/// [`attach_inherited`]).
pub(crate) fn segment() -> &'static Segment {
    SEGMENT.get_or_init(|| {
        let requested = REQUESTED_SIZE.load(Ordering::Relaxed);
        let size = if requested > 0 {
            requested
        } else {
            cspnet_core::env_size("cspnet-processes", ENV_SIZE, MIN_SIZE, DEFAULT_SIZE)
        };
        // Only `set_segment_size` can ask for less, and it documents the raise.
        Segment::create(size.max(MIN_SIZE))
    })
}

/// In a re-executed child: maps the parent's segment from the inherited memfd `fd` (named by
/// [`ENV_FD`], which the caller has already taken out of the environment), and marks `fd`
/// close-on-exec again, so that programs this child starts do not inherit it. `false` if `fd`
/// does not hold a segment or this process has one already.
///
/// Only the exec bootstrap calls this: a program that merely finds `CSPNET_SHM_FD` in its
/// environment never joins a segment through it.
pub(crate) fn attach_inherited(fd: RawFd) -> bool {
    // SAFETY: fcntl(F_SETFD) on an fd number: it fails harmlessly (EBADF) if the number is not
    // open; if it is, only its close-on-exec flag changes.
    unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    SEGMENT.get().is_none() && Segment::attach(fd).is_some_and(|seg| SEGMENT.set(seg).is_ok())
}

/// The segment if this process has one already (no creation).
pub(crate) fn existing() -> Option<&'static Segment> {
    SEGMENT.get()
}

fn check(what: &str, r: libc::c_int) {
    if r != 0 {
        panic!(
            "cspnet-processes: {what} failed: {}",
            std::io::Error::from_raw_os_error(if r == -1 {
                std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
            } else {
                r
            })
        );
    }
}

/// The heap's words in the segment: each an atomic, used only by the lock holder.
struct SharedWords<'s>(&'s Segment);

impl Words for SharedWords<'_> {
    fn len(&self) -> usize {
        self.0.size - HEADER
    }

    fn load(&self, at: usize) -> u64 {
        self.0.rec::<Word>((HEADER + at) as u64).get()
    }

    fn store(&mut self, at: usize, value: u64) {
        self.0.rec::<Word>((HEADER + at) as u64).set(value);
    }
}

impl Segment {
    fn create(size: usize) -> Segment {
        // SAFETY: memfd_create with a valid C string; the fd is owned by this struct for the
        // life of the process.
        let fd = unsafe { libc::memfd_create(c"cspnet".as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            panic!(
                "cspnet-processes: memfd_create failed: {}",
                std::io::Error::last_os_error()
            );
        }
        // SAFETY: fd is a fresh memfd; ftruncate makes it `size` bytes of zeroes (sparse).
        check("ftruncate of the shared segment", unsafe {
            libc::ftruncate(fd, size as libc::off_t)
        });
        let seg = Segment::map(fd, size);
        let h = seg.base as *mut Header;
        // SAFETY: the mapping is fresh, page-aligned, zeroed and at least HEADER bytes; no other
        // process or thread can see it yet, so these plain writes race with nothing. The atomics
        // need no initialisation (zero is their starting value).
        unsafe {
            (*h).magic = MAGIC;
            (*h).size = size as u64;
            let mut attr: libc::pthread_mutexattr_t = std::mem::zeroed();
            check(
                "pthread_mutexattr_init",
                libc::pthread_mutexattr_init(&mut attr),
            );
            check(
                "pthread_mutexattr_setpshared",
                libc::pthread_mutexattr_setpshared(&mut attr, libc::PTHREAD_PROCESS_SHARED),
            );
            check(
                "pthread_mutexattr_setrobust",
                libc::pthread_mutexattr_setrobust(&mut attr, libc::PTHREAD_MUTEX_ROBUST),
            );
            check(
                "pthread_mutex_init",
                libc::pthread_mutex_init((*h).lock.get(), &attr),
            );
            libc::pthread_mutexattr_destroy(&mut attr);
        }
        seg.header().next_id.store(1 << 32, Ordering::Relaxed);
        NextFit::format(SharedWords(&seg));
        seg
    }

    /// Maps the memfd `fd` if it holds a segment made by [`Segment::create`] (possibly in another
    /// process); `None` if it does not.
    fn attach(fd: RawFd) -> Option<Segment> {
        // SAFETY: fstat on an fd number fills `st` or fails (then we give up); `st` is a valid
        // out-pointer and all-zero is a valid `stat`.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        if unsafe { libc::fstat(fd, &mut st) } != 0 || (st.st_size as usize) < HEADER {
            return None;
        }
        let seg = Segment::map(fd, st.st_size as usize);
        // SAFETY: the mapping is at least HEADER bytes; `magic` was written once by `create`
        // before the fd was shared and never changes.
        let magic = unsafe { (*(seg.base as *const Header)).magic };
        (magic == MAGIC).then_some(seg)
    }

    /// Maps `size` bytes of `fd` shared, read-write.
    fn map(fd: RawFd, size: usize) -> Segment {
        // SAFETY: a fresh shared mapping at an address of the kernel's choosing, so it overlaps
        // nothing of ours; failure is checked below. It is never unmapped. A file shorter than
        // `size` would fault on access, but both callers pass the file's own size.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            panic!(
                "cspnet-processes: mmap of the shared segment failed: {}",
                std::io::Error::last_os_error()
            );
        }
        Segment {
            base: base as *mut u8,
            size,
            fd,
        }
    }

    /// The memfd (inherited by re-executed children).
    pub(crate) fn fd(&self) -> RawFd {
        self.fd
    }

    /// The segment size in bytes.
    pub(crate) fn size(&self) -> usize {
        self.size
    }

    fn header(&self) -> &Header {
        // SAFETY: the header is at offset 0 of a live, page-aligned mapping. Its plain fields
        // (`magic`, `size`) never change after `create`; the lock is in an UnsafeCell and only
        // reached through its pointer; everything else is atomic.
        unsafe { &*(self.base as *const Header) }
    }

    /// The record of type `T` at segment offset `off`.
    ///
    /// # Panics
    ///
    /// If `off` is not suitably aligned for `T`, or the record would not lie inside the segment
    /// past the header's plain fields: a corrupt offset stops here, never reaches memory outside
    /// the mapping.
    pub(crate) fn rec<T: Record>(&self, off: u64) -> &T {
        let at = off as usize;
        assert!(
            at >= RECORDS
                && at % align_of::<T>() == 0
                && at
                    .checked_add(size_of::<T>())
                    .is_some_and(|end| end <= self.size),
            "cspnet-processes: a record offset {off:#x} outside the segment"
        );
        // SAFETY: in bounds and aligned (checked above) in a mapping that is never unmapped; `T`
        // is made only of atomics (`Record`), so any bytes are a valid `T` and sharing the
        // reference with other processes that change the record is sound.
        unsafe { &*(self.base.add(at) as *const T) }
    }

    /// Offset of the header's heap queue (entries of alternations waiting for heap space).
    pub(crate) fn heapq(&self) -> u64 {
        offset_of!(Header, heapq) as u64
    }

    /// The list of every live channel record (only `head` is used; the links are the records'
    /// `all_next`/`all_prev`).
    pub(crate) fn chans(&self) -> &List {
        &self.header().chans
    }

    /// Panics unless `slot` lies in the heap.
    fn check_slot(&self, slot: Slot) -> usize {
        let at = slot.off as usize;
        assert!(
            at >= HEADER
                && at
                    .checked_add(slot.len as usize)
                    .is_some_and(|end| end <= self.size),
            "cspnet-processes: a payload slot {slot:?} outside the heap"
        );
        at
    }

    /// Copies `bytes` into the payload slot `to`, which must be exactly as long.
    ///
    /// The caller owns `to` (a fresh allocation of its own, not yet offered to anyone), so no
    /// other process reads or writes those bytes meanwhile.
    pub(crate) fn write_payload(&self, to: Slot, bytes: &[u8]) {
        assert_eq!(to.len, bytes.len() as u64, "a payload and its slot differ");
        let at = self.check_slot(to);
        // SAFETY: the destination lies in the mapping (checked) and, by the ownership rule in the
        // module docs, is touched by no one else until it is offered; `bytes` is a separate
        // buffer of this process, so they do not overlap.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.base.add(at), bytes.len()) };
    }

    /// Copies the payload in `from` out of the segment.
    ///
    /// The caller owns `from` (handed to it by a commit and not yet freed).
    pub(crate) fn read_payload(&self, from: Slot) -> Vec<u8> {
        let at = self.check_slot(from);
        let len = from.len as usize;
        let mut bytes = Vec::with_capacity(len);
        // SAFETY: the source lies in the mapping (checked) and, by the ownership rule, nobody
        // writes it while its owner reads; the destination is the Vec's fresh capacity of `len`
        // bytes, which the copy initialises before `set_len`.
        unsafe {
            std::ptr::copy_nonoverlapping(self.base.add(at), bytes.as_mut_ptr(), len);
            bytes.set_len(len);
        }
        bytes
    }

    /// Lends the payload in `from` to `f` without copying it (for large values decoded in place).
    ///
    /// The caller owns `from` and keeps it allocated until `f` returns.
    pub(crate) fn with_payload<R>(&self, from: Slot, f: impl FnOnce(&[u8]) -> R) -> R {
        let at = self.check_slot(from);
        // SAFETY: the bytes lie in the mapping (checked); by the ownership rule nobody writes or
        // frees them while their owner holds them, which covers the whole call of `f` (the
        // borrow cannot escape it).
        let bytes = unsafe { std::slice::from_raw_parts(self.base.add(at), from.len as usize) };
        f(bytes)
    }

    /// A fresh network-wide process id.
    pub(crate) fn next_id(&self) -> u64 {
        self.header().next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Takes the segment lock, recording which channels the critical section may change so that
    /// a process dying inside it takes exactly those channels down (poison) instead of the lock.
    ///
    /// If the previous holder died holding it, `recover` runs first (with the lock held) and is
    /// told what the dead process may have left half-changed; the lock is then made consistent.
    /// The same `recover` serves every later re-acquisition of this `Locked`.
    pub(crate) fn lock(&'static self, touching: &[u64], recover: Recover) -> Locked {
        let mut l = Locked {
            seg: self,
            wakes: Vec::new(),
            held: false,
            recover,
        };
        l.acquire(touching);
        l
    }

    /// Waits (with the lock not held) until heap space is freed after `seq` was read.
    pub(crate) fn wait_for_space(&self, seq: u32, deadline: Deadline) {
        let h = self.header();
        futex::wait(&h.heap_seq, seq, deadline);
        h.heap_waiters.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What a process that died holding the segment lock may have left half-changed.
pub(crate) enum Orphaned {
    /// The channels its critical section named.
    Channels(Vec<u64>),
    /// Any channel: it named too many, or died inside the allocator (then the heap is marked
    /// broken and never allocates again).
    All,
}

/// Repairs what a dead lock holder left (see [`Segment::lock`]).
pub(crate) type Recover = fn(&mut Locked, Orphaned);

/// The segment lock, held; dropping it unlocks and then wakes the futexes the section asked for.
pub(crate) struct Locked {
    seg: &'static Segment,
    /// Segment offsets of futex words to wake after unlocking.
    wakes: Vec<u64>,
    held: bool,
    recover: Recover,
}

impl Locked {
    fn mutex(&self) -> *mut libc::pthread_mutex_t {
        self.seg.header().lock.get()
    }

    fn acquire(&mut self, touching: &[u64]) {
        debug_assert!(!self.held);
        let lock = self.mutex();
        // Spin briefly first: critical sections are short, and sleeping on a held lock costs two
        // context switches.
        let mut r = libc::EBUSY;
        for _ in 0..SPINS {
            // SAFETY: the mutex was initialised process-shared and robust by `create`, and lives
            // in the mapping for as long as the process.
            r = unsafe { libc::pthread_mutex_trylock(lock) };
            if r != libc::EBUSY {
                break;
            }
            std::hint::spin_loop();
        }
        if r == libc::EBUSY {
            // SAFETY: as above.
            r = unsafe { libc::pthread_mutex_lock(lock) };
        }
        self.held = true;
        if r == libc::EOWNERDEAD {
            let orphaned = self.orphaned();
            (self.recover)(self, orphaned);
            // SAFETY: we own the mutex in the EOWNERDEAD state; the state is repaired above.
            unsafe { libc::pthread_mutex_consistent(lock) };
        } else if r != 0 {
            panic!(
                "cspnet-processes: the segment lock failed: {}",
                std::io::Error::from_raw_os_error(r)
            );
        }
        let h = self.seg.header();
        if touching.len() <= TOUCH {
            for (slot, &c) in h.touch.iter().zip(touching) {
                slot.store(c, Ordering::Relaxed);
            }
            h.touch_n.store(touching.len() as u32, Ordering::Relaxed);
        } else {
            h.touch_n.store(TOUCH_ALL, Ordering::Relaxed);
        }
    }

    /// What the dead holder was changing, from the header's touch list and allocator mark.
    fn orphaned(&self) -> Orphaned {
        let h = self.seg.header();
        let n = h.touch_n.load(Ordering::Relaxed);
        let in_heap = h.in_heap.load(Ordering::Relaxed) != 0;
        if in_heap {
            // The heap may be half-updated: never allocate from it again.
            h.broken.store(1, Ordering::Relaxed);
            h.in_heap.store(0, Ordering::Relaxed);
        }
        if in_heap || n == TOUCH_ALL {
            Orphaned::All
        } else {
            Orphaned::Channels(
                h.touch[..n as usize]
                    .iter()
                    .map(|t| t.load(Ordering::Relaxed))
                    .collect(),
            )
        }
    }

    pub(crate) fn seg(&self) -> &'static Segment {
        self.seg
    }

    pub(crate) fn chan(&self, off: u64) -> &ChanRec {
        self.seg.rec(off)
    }

    pub(crate) fn waiter(&self, off: u64) -> &WaiterRec {
        self.seg.rec(off)
    }

    pub(crate) fn entry(&self, off: u64) -> &Entry {
        self.seg.rec(off)
    }

    pub(crate) fn list(&self, off: u64) -> &List {
        self.seg.rec(off)
    }

    pub(crate) fn slot(&self, off: u64) -> &SlotCell {
        self.seg.rec(off)
    }

    /// Whether a process died inside the allocator (then every operation fails with poison).
    pub(crate) fn broken(&self) -> bool {
        self.seg.header().broken.load(Ordering::Relaxed) != 0
    }

    /// Allocates `len` bytes; `Ok(None)` when the heap is full now.
    pub(crate) fn alloc(&mut self, len: usize) -> Result<Option<u64>, HeapError> {
        let h = self.seg.header();
        h.in_heap.store(1, Ordering::Relaxed);
        let r = NextFit::attach(SharedWords(self.seg)).alloc(len);
        h.in_heap.store(0, Ordering::Relaxed);
        r.map(|o| o.map(|o| (o + HEADER) as u64))
    }

    /// Payload bytes free in the heap now (for tests that check nothing leaks).
    #[cfg(test)]
    pub(crate) fn heap_free_bytes(&self) -> usize {
        NextFit::attach(SharedWords(self.seg)).free_bytes()
    }

    /// Frees what [`alloc`](Self::alloc) returned and wakes the waiters for space that have no
    /// waiter record. Waiters queued on the heap queue are the caller's to alert.
    pub(crate) fn heap_free(&mut self, off: u64) {
        let h = self.seg.header();
        h.in_heap.store(1, Ordering::Relaxed);
        NextFit::attach(SharedWords(self.seg)).free(off as usize - HEADER);
        h.in_heap.store(0, Ordering::Relaxed);
        self.wake_space_waiters();
    }

    /// Allocation for records: waits for space rather than failing (records are small). The lock
    /// is released while it waits.
    pub(crate) fn alloc_wait(&mut self, len: usize) -> Result<u64, HeapError> {
        loop {
            if let Some(o) = self.alloc(len)? {
                return Ok(o);
            }
            // Rare: the heap is full of payloads.
            let seq = self.space_ticket();
            let seg = self.seg;
            self.unlock_now();
            seg.wait_for_space(seq, Deadline::Never);
            self.acquire(&[]);
        }
    }

    /// Registers as waiting for space without a waiter record; returns the sequence to wait on
    /// (with [`Segment::wait_for_space`], after unlocking).
    pub(crate) fn space_ticket(&self) -> u32 {
        let h = self.seg.header();
        h.heap_waiters.fetch_add(1, Ordering::AcqRel);
        h.heap_seq.load(Ordering::Acquire)
    }

    /// Wakes, after unlocking, everyone waiting for space without a waiter record.
    pub(crate) fn wake_space_waiters(&mut self) {
        let h = self.seg.header();
        if h.heap_waiters.load(Ordering::Relaxed) > 0 {
            h.heap_seq.fetch_add(1, Ordering::Release);
            self.wakes.push(offset_of!(Header, heap_seq) as u64);
        }
    }

    /// Wakes the futex word at segment offset `word` once the lock is released.
    pub(crate) fn wake_later(&mut self, word: u64) {
        self.wakes.push(word);
    }

    /// Wakes waiter record `w` once the lock is released, if its waiter announced that it
    /// sleeps; call it right after claiming the record's claim word under this lock.
    ///
    /// The handshake with the waiter (`Operation::sleep` in the engine) is Dekker's: the claimer
    /// claims the word, then (SeqCst fence) reads `sleeping`; the waiter sets `sleeping`, then
    /// (SeqCst fence) reads the word before `futex_wait`. The fences forbid both reading the old
    /// value, so either the claimer sees `sleeping` and wakes, or the waiter sees its claim and
    /// does not sleep (modelled in core's `claim::loom_wake_tests`). `sleeping` is read here, under
    /// the lock, because the record may be freed once the lock is released.
    pub(crate) fn wake_waiter_later(&mut self, w: u64) {
        fence(Ordering::SeqCst);
        if self.waiter(w).sleeping.load(Ordering::SeqCst) != 0 {
            self.wakes.push(w); // the claim word is at offset 0 of the record
        }
    }

    fn unlock_now(&mut self) {
        if !self.held {
            return;
        }
        self.held = false;
        self.seg.header().touch_n.store(0, Ordering::Relaxed);
        // SAFETY: this thread holds the mutex (`held`), which is initialised and lives as long
        // as the process.
        unsafe { libc::pthread_mutex_unlock(self.mutex()) };
        for w in self.wakes.drain(..) {
            futex::wake(self.seg.rec::<AtomicU32>(w), i32::MAX);
        }
    }
}

impl Drop for Locked {
    fn drop(&mut self) {
        self.unlock_now();
    }
}
