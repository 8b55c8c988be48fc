//! The shared-memory segment: one memfd mapped `MAP_SHARED`, a header with the robust lock, and the heap.
//!
//! Everything stored in the segment refers to other records by *segment offset* (never a pointer),
//! so every process can map it anywhere. Offset 0 is the header, so 0 doubles as "none" ([`NIL`]).
//! The layout is drawn in `processes/README.md`.

use crate::futex;
use crate::heap::{Heap, HeapError};
use std::os::fd::RawFd;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

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

/// Environment variable: segment size in bytes (suffixes `k`, `m`, `g` accepted).
pub(crate) const ENV_SIZE: &str = "CSPNET_SHM_SIZE";
/// Environment variable: the inherited memfd of a re-executed child.
pub(crate) const ENV_FD: &str = "CSPNET_SHM_FD";

/// A channel's state word.
pub(crate) const OPEN: u32 = 0;
pub(crate) const RETIRED: u32 = 1;
pub(crate) const POISONED: u32 = 2;

/// A waiter's state word (its futex).
pub(crate) const WAITING: u32 = 0;
pub(crate) const DONE: u32 = 1;
pub(crate) const ALERTED: u32 = 2;
pub(crate) const ABORTED: u32 = 3;

/// What a queue entry offers.
pub(crate) const K_READ: u32 = 0;
pub(crate) const K_WRITE: u32 = 1;
/// A write whose payload is not in the heap yet (the heap was full): never matched, only alerted.
pub(crate) const K_WRITE_PENDING: u32 = 2;
/// Waits for heap space (linked on the header's heap queue).
pub(crate) const K_HEAP: u32 = 3;

/// The segment header at offset 0.
#[repr(C)]
pub(crate) struct Header {
    magic: u64,
    size: u64,
    lock: libc::pthread_mutex_t,
    /// Network-wide process id counter.
    pub(crate) next_id: AtomicU64,
    /// Bumped when heap space is freed and someone waits for it without a waiter record.
    heap_seq: AtomicU32,
    heap_waiters: AtomicU32,
    /// Set when a process died inside the allocator: every channel is then poisoned for good.
    broken: AtomicU32,
    in_heap: AtomicU32,
    touch_n: AtomicU32,
    touch: [AtomicU64; TOUCH],
    /// Every live channel record (for recovery), linked through `ChanRec::all`.
    chans: List,
    /// Entries of alternations waiting for heap space.
    pub(crate) heapq: List,
}

/// A doubly linked list of records, by offset.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(crate) struct List {
    pub(crate) head: u64,
    pub(crate) tail: u64,
}

/// A payload in the heap: its offset and length.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Slot {
    pub(crate) off: u64,
    pub(crate) len: u64,
}

/// A channel's record.
#[repr(C)]
pub(crate) struct ChanRec {
    pub(crate) state: AtomicU32,
    pub(crate) readers: u32,
    pub(crate) writers: u32,
    /// Channel, Reader and Writer handles (in any process) that refer to this record.
    pub(crate) handles: u32,
    pub(crate) capacity: u64,
    /// Ring of `capacity` slots.
    pub(crate) buf: u64,
    pub(crate) buf_head: u64,
    pub(crate) buf_len: u64,
    pub(crate) readq: List,
    pub(crate) writeq: List,
    pub(crate) all_next: u64,
    pub(crate) all_prev: u64,
}

/// One blocked operation or alternation: a futex word and room for one entry per guard.
#[repr(C)]
pub(crate) struct WaiterRec {
    pub(crate) state: AtomicU32,
    /// The guard that committed (valid in `DONE`).
    pub(crate) chosen: u32,
    /// The payload handed to a committed input guard.
    pub(crate) got: Slot,
    pub(crate) cap: u64,
    pub(crate) used: u64,
}

/// A waiter's registration on one queue.
#[repr(C)]
pub(crate) struct Entry {
    pub(crate) next: u64,
    pub(crate) prev: u64,
    /// The list this entry is linked on (NIL when unlinked).
    pub(crate) list: u64,
    pub(crate) waiter: u64,
    pub(crate) guard: u32,
    pub(crate) kind: u32,
    pub(crate) payload: Slot,
}

pub(crate) const ENTRY_SIZE: usize = std::mem::size_of::<Entry>();
pub(crate) const WAITER_SIZE: usize = std::mem::size_of::<WaiterRec>();

/// The mapped segment of this process.
pub(crate) struct Segment {
    base: *mut u8,
    size: usize,
    fd: RawFd,
}

// SAFETY: the segment is a fixed mapping that lives as long as the process; all mutation of its
// contents happens under the process-shared lock or through atomics.
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

fn parse_size(s: &str) -> Option<usize> {
    let s = s.trim().to_ascii_lowercase();
    let (num, mul) = match s.chars().last()? {
        'k' => (&s[..s.len() - 1], 1usize << 10),
        'm' => (&s[..s.len() - 1], 1 << 20),
        'g' => (&s[..s.len() - 1], 1 << 30),
        _ => (&s[..], 1),
    };
    num.trim().parse::<usize>().ok()?.checked_mul(mul)
}

/// The segment, created on first use (or attached, in a re-executed child).
pub(crate) fn segment() -> &'static Segment {
    SEGMENT.get_or_init(|| {
        if let Some(fd) = std::env::var(ENV_FD).ok().and_then(|s| s.parse().ok()) {
            // SAFETY: CSPNET_SHM_FD is set only by `exec` for its child, to the inherited memfd.
            if let Some(seg) = unsafe { Segment::attach(fd) } {
                return seg;
            }
        }
        let requested = REQUESTED_SIZE.load(Ordering::Relaxed);
        let size = if requested > 0 {
            requested
        } else {
            std::env::var(ENV_SIZE)
                .ok()
                .and_then(|s| parse_size(&s))
                .unwrap_or(DEFAULT_SIZE)
        };
        Segment::create(size.max(HEADER + 4096))
    })
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
        // SAFETY: fd is a valid memfd of `size` bytes.
        let seg = unsafe { Segment::map(fd, size) };
        // SAFETY: the mapping is fresh, page-aligned and at least HEADER bytes; nobody else
        // sees it yet.
        unsafe {
            let h = seg.base as *mut Header;
            (*h).magic = MAGIC;
            (*h).size = size as u64;
            (*h).next_id = AtomicU64::new(1 << 32);
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
                libc::pthread_mutex_init(&mut (*h).lock, &attr),
            );
            libc::pthread_mutexattr_destroy(&mut attr);
        }
        Heap::format(seg.heap_region());
        seg
    }

    /// # Safety
    /// `fd` must be a memfd made by [`Segment::create`] (possibly in another process).
    unsafe fn attach(fd: RawFd) -> Option<Segment> {
        // SAFETY: fstat on an fd number; failure is handled.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: `st` is a valid out-pointer.
        if unsafe { libc::fstat(fd, &mut st) } != 0 || (st.st_size as usize) < HEADER {
            return None;
        }
        // SAFETY: the caller promises fd is our memfd; it has st_size bytes.
        let seg = unsafe { Segment::map(fd, st.st_size as usize) };
        // SAFETY: the mapping holds a header written by `create`.
        let magic = unsafe { (*(seg.base as *const Header)).magic };
        (magic == MAGIC).then_some(seg)
    }

    /// # Safety
    /// `fd` must refer to a file of at least `size` bytes.
    unsafe fn map(fd: RawFd, size: usize) -> Segment {
        // SAFETY: a fresh shared mapping of the whole file; never unmapped.
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
        // SAFETY: the header is at offset 0 of a live mapping; its shared fields are atomics or
        // only touched under the lock.
        unsafe { &*(self.base as *const Header) }
    }

    #[allow(clippy::mut_from_ref)]
    fn heap_region(&self) -> &mut [u8] {
        // SAFETY: the heap region lies inside the mapping. It is only viewed as a slice by the
        // holder of the segment lock (or before anyone else can see the segment), so no two
        // such views exist at once in one process.
        unsafe { std::slice::from_raw_parts_mut(self.base.add(HEADER), self.size - HEADER) }
    }

    /// Raw pointer to segment offset `off`.
    pub(crate) fn ptr(&self, off: u64) -> *mut u8 {
        debug_assert!((off as usize) < self.size);
        // SAFETY: offsets stored in the segment are inside it.
        unsafe { self.base.add(off as usize) }
    }

    /// A fresh network-wide process id.
    pub(crate) fn next_id(&self) -> u64 {
        self.header().next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Takes the segment lock, recording which channels the critical section may change so that
    /// a process dying inside it takes exactly those channels down (poison) instead of the lock.
    pub(crate) fn lock(&'static self, touching: &[u64]) -> Locked {
        let mut l = Locked {
            seg: self,
            wakes: Vec::new(),
            held: false,
        };
        l.acquire(touching);
        l
    }

    /// Waits (with the lock not held) until heap space is freed after `seq` was read.
    pub(crate) fn wait_for_space(&self, seq: u32, deadline: cspnet_core::Deadline) {
        let h = self.header();
        futex::wait(&h.heap_seq, seq, deadline);
        h.heap_waiters.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The segment lock, held; dropping it unlocks and then wakes the waiters the section committed.
pub(crate) struct Locked {
    seg: &'static Segment,
    wakes: Vec<u64>,
    held: bool,
}

impl Locked {
    fn acquire(&mut self, touching: &[u64]) {
        debug_assert!(!self.held);
        let h = self.header();
        let lock = &h.lock as *const libc::pthread_mutex_t as *mut libc::pthread_mutex_t;
        // Spin briefly first: critical sections are short, and sleeping on a held lock costs two
        // context switches.
        let mut r = libc::EBUSY;
        for _ in 0..SPINS {
            // SAFETY: the mutex was initialised process-shared and robust by `create`.
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
            self.recover();
            // SAFETY: we own the mutex in the EOWNERDEAD state; the state is repaired above.
            unsafe { libc::pthread_mutex_consistent(lock) };
        } else if r != 0 {
            panic!(
                "cspnet-processes: the segment lock failed: {}",
                std::io::Error::from_raw_os_error(r)
            );
        }
        if touching.len() <= TOUCH {
            for (slot, &c) in h.touch.iter().zip(touching) {
                slot.store(c, Ordering::Relaxed);
            }
            h.touch_n.store(touching.len() as u32, Ordering::Relaxed);
        } else {
            h.touch_n.store(TOUCH_ALL, Ordering::Relaxed);
        }
    }

    pub(crate) fn seg(&self) -> &'static Segment {
        self.seg
    }

    fn header(&self) -> &'static Header {
        self.seg.header()
    }

    /// The record of type `T` at segment offset `off`.
    ///
    /// Callers never hold two references to the same record at once; every record is touched only
    /// under the lock (or, for a waiter's state word, through atomics).
    #[allow(clippy::mut_from_ref)]
    pub(crate) fn rec<T>(&self, off: u64) -> &mut T {
        debug_assert!(off != NIL && (off as usize) + std::mem::size_of::<T>() <= self.seg.size);
        // SAFETY: `off` was returned by our allocator for a record of type `T` (or is the
        // header), so it is in bounds and 16-aligned; the lock is held, so no other process or
        // thread mutates it now.
        unsafe { &mut *(self.seg.ptr(off) as *mut T) }
    }

    pub(crate) fn chan(&self, off: u64) -> &mut ChanRec {
        self.rec(off)
    }

    pub(crate) fn waiter(&self, off: u64) -> &mut WaiterRec {
        self.rec(off)
    }

    pub(crate) fn entry(&self, off: u64) -> &mut Entry {
        self.rec(off)
    }

    /// Whether a process died inside the allocator (then every operation fails with poison).
    pub(crate) fn broken(&self) -> bool {
        self.header().broken.load(Ordering::Relaxed) != 0
    }

    /// Allocates `len` bytes; `Ok(None)` when the heap is full now.
    pub(crate) fn alloc(&mut self, len: usize) -> Result<Option<u64>, HeapError> {
        let h = self.header();
        h.in_heap.store(1, Ordering::Relaxed);
        let r = Heap::attach(self.seg.heap_region()).alloc(len);
        h.in_heap.store(0, Ordering::Relaxed);
        r.map(|o| o.map(|o| (o + HEADER) as u64))
    }

    /// Frees what [`alloc`](Self::alloc) returned, and wakes whoever waits for space.
    pub(crate) fn free(&mut self, off: u64) {
        let h = self.header();
        h.in_heap.store(1, Ordering::Relaxed);
        Heap::attach(self.seg.heap_region()).free(off as usize - HEADER);
        h.in_heap.store(0, Ordering::Relaxed);
        if h.heap_waiters.load(Ordering::Relaxed) > 0 {
            h.heap_seq.fetch_add(1, Ordering::Release);
            self.wakes.push(&h.heap_seq as *const AtomicU32 as u64);
        }
        let heapq = self.heapq();
        if self.rec::<List>(heapq).head != NIL {
            self.alert_list(heapq);
        }
    }

    /// Registers as waiting for space without a waiter record; returns the sequence to wait on.
    pub(crate) fn space_ticket(&self) -> u32 {
        let h = self.header();
        h.heap_waiters.fetch_add(1, Ordering::AcqRel);
        h.heap_seq.load(Ordering::Acquire)
    }

    /// Offset of the header's heap queue.
    pub(crate) fn heapq(&self) -> u64 {
        let h = self.header();
        (&h.heapq as *const List as usize - self.seg.base as usize) as u64
    }

    /// Wakes the futex at segment offset `word` once the lock is released.
    pub(crate) fn wake_later(&mut self, word: u64) {
        self.wakes.push(self.seg.ptr(word) as u64);
    }

    /// Copies `bytes` into the heap at `off`.
    pub(crate) fn copy_in(&self, off: u64, bytes: &[u8]) {
        // SAFETY: `off` is a fresh allocation of at least `bytes.len()` bytes in the mapping,
        // owned by the caller.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.seg.ptr(off), bytes.len()) };
    }

    /// Appends entry `e` to the list at offset `list`.
    pub(crate) fn push_back(&self, list: u64, e: u64) {
        let l = *self.rec::<List>(list);
        {
            let ent = self.entry(e);
            ent.list = list;
            ent.next = NIL;
            ent.prev = l.tail;
        }
        if l.tail == NIL {
            self.rec::<List>(list).head = e;
        } else {
            self.entry(l.tail).next = e;
        }
        self.rec::<List>(list).tail = e;
    }

    /// Unlinks entry `e` from whatever list holds it (no-op when unlinked).
    pub(crate) fn unlink(&self, e: u64) {
        let (list, next, prev) = {
            let ent = self.entry(e);
            (ent.list, ent.next, ent.prev)
        };
        if list == NIL {
            return;
        }
        if prev == NIL {
            self.rec::<List>(list).head = next;
        } else {
            self.entry(prev).next = next;
        }
        if next == NIL {
            self.rec::<List>(list).tail = prev;
        } else {
            self.entry(next).prev = prev;
        }
        let ent = self.entry(e);
        ent.list = NIL;
        ent.next = NIL;
        ent.prev = NIL;
    }

    /// Commits waiter `w` (if it still waits) with guard `guard` and wakes it after unlock.
    pub(crate) fn commit(&mut self, w: u64, guard: u32, got: Slot) -> bool {
        let rec = self.waiter(w);
        if rec.state.load(Ordering::Relaxed) != WAITING {
            return false;
        }
        rec.chosen = guard;
        rec.got = got;
        let used = rec.used;
        // Unlink the waiter's entries for it, so that it can finish without taking the lock.
        for k in 0..used {
            self.unlink(w + (WAITER_SIZE + k as usize * ENTRY_SIZE) as u64);
        }
        // Exactly one guard commits: the waiter leaves WAITING once (every transition happens
        // under the lock, so this cannot fail after the check above; the CAS states the rule).
        let rec = self.waiter(w);
        if rec
            .state
            .compare_exchange(WAITING, DONE, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            return false;
        }
        self.wake_later(w);
        true
    }

    /// Alerts every waiting entry's waiter on list `list` so it looks again.
    pub(crate) fn alert_list(&mut self, list: u64) {
        let mut e = self.rec::<List>(list).head;
        while e != NIL {
            let (w, next) = {
                let ent = self.entry(e);
                (ent.waiter, ent.next)
            };
            let st = &self.waiter(w).state;
            if st
                .compare_exchange(WAITING, ALERTED, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                self.wake_later(w);
            }
            e = next;
        }
    }

    /// Moves a channel to `to` (RETIRED or POISONED; poison overrides, nothing undoes it) and
    /// alerts its waiters. Poison discards buffered values.
    pub(crate) fn end_channel(&mut self, c: u64, to: u32) {
        let cur = self.chan(c).state.load(Ordering::Relaxed);
        if cur >= to {
            return;
        }
        self.chan(c).state.store(to, Ordering::Release);
        if to == POISONED {
            self.drop_buffer(c);
        }
        let (rq, wq) = {
            let base = c;
            (
                base + std::mem::offset_of!(ChanRec, readq) as u64,
                base + std::mem::offset_of!(ChanRec, writeq) as u64,
            )
        };
        self.alert_list(rq);
        self.alert_list(wq);
        let h = self.header();
        if h.heap_waiters.load(Ordering::Relaxed) > 0 {
            h.heap_seq.fetch_add(1, Ordering::Release);
            self.wakes.push(&h.heap_seq as *const AtomicU32 as u64);
        }
    }

    /// Frees the values buffered in channel `c`.
    pub(crate) fn drop_buffer(&mut self, c: u64) {
        while let Some(s) = self.buf_pop(c) {
            self.free(s.off);
        }
    }

    fn buf_slot(&self, c: u64, i: u64) -> &mut Slot {
        let ch = self.chan(c);
        let at = ch.buf + ((ch.buf_head + i) % ch.capacity) * 16;
        self.rec::<Slot>(at)
    }

    pub(crate) fn buf_pop(&mut self, c: u64) -> Option<Slot> {
        if self.chan(c).buf_len == 0 {
            return None;
        }
        let s = *self.buf_slot(c, 0);
        let ch = self.chan(c);
        ch.buf_head = (ch.buf_head + 1) % ch.capacity;
        ch.buf_len -= 1;
        Some(s)
    }

    pub(crate) fn buf_push(&mut self, c: u64, s: Slot) {
        let len = self.chan(c).buf_len;
        *self.buf_slot(c, len) = s;
        self.chan(c).buf_len += 1;
    }

    /// Creates a channel record with one handle (the `Channel` being made).
    pub(crate) fn new_channel(&mut self, capacity: usize) -> Result<u64, HeapError> {
        let c = self.alloc_wait(std::mem::size_of::<ChanRec>())?;
        let buf = if capacity > 0 {
            self.alloc_wait(capacity * 16)?
        } else {
            NIL
        };
        // SAFETY: `c` is a fresh allocation of ChanRec's size; zeroing it makes every field
        // valid (atomics and integers).
        unsafe { std::ptr::write_bytes(self.seg.ptr(c), 0, std::mem::size_of::<ChanRec>()) };
        let head = self.header().chans.head;
        {
            let ch = self.chan(c);
            ch.capacity = capacity as u64;
            ch.buf = buf;
            ch.handles = 1;
            ch.all_next = head;
        }
        if head != NIL {
            self.chan(head).all_prev = c;
        }
        self.hdr_mut().chans.head = c;
        Ok(c)
    }

    #[allow(clippy::mut_from_ref)]
    fn hdr_mut(&self) -> &mut Header {
        // SAFETY: the header is at offset 0; its non-atomic fields are only changed under the
        // lock, which is held.
        unsafe { &mut *(self.seg.base as *mut Header) }
    }

    /// Allocation for records: waits for space rather than failing (records are small).
    fn alloc_wait(&mut self, len: usize) -> Result<u64, HeapError> {
        loop {
            if let Some(o) = self.alloc(len)? {
                return Ok(o);
            }
            // Rare: the heap is full of payloads. Release the lock while waiting.
            let seq = self.space_ticket();
            let seg = self.seg;
            self.unlock_now();
            seg.wait_for_space(seq, cspnet_core::Deadline::Never);
            self.acquire(&[]);
        }
    }

    /// Drops one handle of channel `c`; frees the record when it was the last.
    pub(crate) fn release_handle(&mut self, c: u64) {
        let ch = self.chan(c);
        ch.handles -= 1;
        if ch.handles > 0 {
            return;
        }
        self.drop_buffer(c);
        let (next, prev, buf) = {
            let ch = self.chan(c);
            (ch.all_next, ch.all_prev, ch.buf)
        };
        if prev == NIL {
            self.hdr_mut().chans.head = next;
        } else {
            self.chan(prev).all_next = next;
        }
        if next != NIL {
            self.chan(next).all_prev = prev;
        }
        if buf != NIL {
            self.free(buf);
        }
        self.free(c);
    }

    /// The owner of the lock died in a critical section: poison what it was changing.
    fn recover(&mut self) {
        let h = self.header();
        let n = h.touch_n.load(Ordering::Relaxed);
        let all = n == TOUCH_ALL || h.in_heap.load(Ordering::Relaxed) != 0;
        if h.in_heap.load(Ordering::Relaxed) != 0 {
            // The heap may be half-updated: never allocate from it again.
            h.broken.store(1, Ordering::Relaxed);
        }
        h.in_heap.store(0, Ordering::Relaxed);
        let victims: Vec<u64> = if all {
            let mut v = Vec::new();
            let mut c = h.chans.head;
            while c != NIL {
                v.push(c);
                c = self.chan(c).all_next;
            }
            v
        } else {
            h.touch[..n as usize]
                .iter()
                .map(|t| t.load(Ordering::Relaxed))
                .collect()
        };
        for c in victims {
            // Poison without freeing (the heap may be inconsistent): mark, then alert and wake
            // every entry, even ones already committed whose wake the dead process never sent.
            self.chan(c).state.store(POISONED, Ordering::Release);
            for q in [
                c + std::mem::offset_of!(ChanRec, readq) as u64,
                c + std::mem::offset_of!(ChanRec, writeq) as u64,
            ] {
                self.alert_list(q);
                let mut e = self.rec::<List>(q).head;
                while e != NIL {
                    let (w, next) = (self.entry(e).waiter, self.entry(e).next);
                    self.wake_later(w);
                    e = next;
                }
            }
        }
        let heapq = self.heapq();
        self.alert_list(heapq);
        h.heap_seq.fetch_add(1, Ordering::Release);
        self.wakes.push(&h.heap_seq as *const AtomicU32 as u64);
    }

    fn unlock_now(&mut self) {
        if !self.held {
            return;
        }
        self.held = false;
        let h = self.header();
        h.touch_n.store(0, Ordering::Relaxed);
        let lock = &h.lock as *const libc::pthread_mutex_t as *mut libc::pthread_mutex_t;
        // SAFETY: this process holds the mutex (a `Locked` exists only while it does).
        unsafe { libc::pthread_mutex_unlock(lock) };
        for w in self.wakes.drain(..) {
            futex::wake(w as *const AtomicU32, i32::MAX);
        }
    }
}

impl Drop for Locked {
    fn drop(&mut self) {
        self.unlock_now();
    }
}
