//! The payload heap: a next-fit allocator with boundary tags, kept entirely inside a byte region.
//!
//! The region is the shared-memory segment (or a slice of it) that every OS process of a network maps,
//! so the heap stores offsets only, never pointers, and keeps all of its state (the rover and every
//! block's header and footer) inside the region: a process that attaches to the same bytes sees the same
//! heap. It takes no lock; the caller holds the segment's process-shared lock around every call. The
//! layout and the rover rules, with a diagram, are in `heap/README.md` beside this file.
//!
//! The allocator (`NextFit`) touches only the 8-byte words of the region header and the block tags,
//! through the `Words` trait. The public [`Heap`] is `NextFit` over a `&mut [u8]` (what the unit
//! tests, the property test and Miri exercise); the segment runs the same code over atomic words
//! in shared memory, so it never needs a `&mut [u8]` over payloads other processes are reading.

use std::fmt;

/// `b"cspheap1"`, at offset 0 of a formatted region.
const MAGIC: u64 = u64::from_le_bytes(*b"cspheap1");
/// Offset of the region length recorded by [`Heap::format`].
const OFF_LEN: usize = 8;
/// Offset of the rover: the header offset of the block where the next search starts.
const OFF_ROVER: usize = 16;
/// Header offset of the first block; its payload starts at 32, a multiple of [`ALIGN`].
const FIRST: usize = 24;
/// Size of a header or footer word.
const TAG: usize = 8;
/// Header plus footer: a block of this size holds a zero-byte payload. Also the smallest split remainder.
const OVERHEAD: usize = 2 * TAG;
/// Block sizes, and payload offsets relative to the region start, are multiples of this.
const ALIGN: usize = 16;
/// The high 16 bits of every header and footer word, so that a stray offset is caught early.
const TAG_MAGIC: u64 = 0xC5B0 << 48;
const TAG_MAGIC_MASK: u64 = 0xFFFF << 48;
/// Bit 0 of a tag word: the block is allocated.
const USED: u64 = 1;
/// Regions larger than this are used only up to this length, so every block size fits below `TAG_MAGIC`.
const MAX_REGION: usize = 1 << 47;

/// A next-fit heap laid out inside `region`.
///
/// All of the heap's state lives in the region, so a `Heap` is only a view: [`Heap::format`] writes an
/// empty heap into the bytes, [`Heap::attach`] views bytes that some process formatted earlier, and
/// dropping the view changes nothing. Allocation returns an offset into the region, valid in every
/// process that maps it, wherever it is mapped.
///
/// # Examples
///
/// ```
/// use cspnet_processes::heap::Heap;
///
/// let mut region = vec![0u8; 4096];
/// let mut heap = Heap::format(&mut region);
/// let at = heap.alloc(5)?.expect("an empty heap has room for 5 bytes");
/// heap.bytes_mut(at, 5).copy_from_slice(b"hello");
/// assert_eq!(heap.bytes(at, 5), b"hello");
/// heap.free(at);
/// assert_eq!(heap.largest_free(), heap.max_alloc());
/// # Ok::<(), cspnet_processes::heap::HeapError>(())
/// ```
pub struct Heap<'a> {
    core: NextFit<&'a mut [u8]>,
}

/// A payload that can never fit in the heap, however much is freed: it is larger than
/// [`Heap::max_alloc`].
///
/// # Examples
///
/// ```
/// use cspnet_processes::heap::{Heap, HeapError};
///
/// let mut region = vec![0u8; 1024];
/// let mut heap = Heap::format(&mut region);
/// let too_big = heap.max_alloc() + 1;
/// let err = heap.alloc(too_big).unwrap_err();
/// assert_eq!(err, HeapError { requested: too_big, largest_possible: heap.max_alloc() });
/// assert!(err.to_string().starts_with("a payload of"));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeapError {
    /// The size that was asked for, in bytes.
    pub requested: usize,
    /// The largest payload the heap can ever hold ([`Heap::max_alloc`]).
    pub largest_possible: usize,
}

impl fmt::Display for HeapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a payload of {} bytes can never fit: the channel heap holds at most {} bytes per payload",
            self.requested, self.largest_possible
        )
    }
}

impl std::error::Error for HeapError {}

/// One block of the heap, as [`Heap::blocks`] reports it: for diagnostics and tests.
///
/// # Examples
///
/// ```
/// use cspnet_processes::heap::{Block, Heap};
///
/// let mut region = vec![0u8; 256];
/// let mut heap = Heap::format(&mut region);
/// let at = heap.alloc(20)?.unwrap();
/// let first: Block = heap.blocks().next().unwrap();
/// assert_eq!(first, Block { offset: at, capacity: 32, used: true });
/// # Ok::<(), cspnet_processes::heap::HeapError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block {
    /// Offset of the block's payload in the region: what [`Heap::alloc`] returned for it, if it is used.
    pub offset: usize,
    /// Payload bytes the block holds: for a used block, the request rounded up to a multiple of 16.
    pub capacity: usize,
    /// Whether the block is allocated.
    pub used: bool,
}

/// Rounds a payload size up to the block granularity. `size` is at most `max_alloc`, so this cannot
/// overflow.
fn round_up(size: usize) -> usize {
    (size + ALIGN - 1) & !(ALIGN - 1)
}

/// The tag word written into a block's header and footer.
fn tag(size: usize, used: bool) -> u64 {
    TAG_MAGIC | size as u64 | if used { USED } else { 0 }
}

/// The length of a region of `len` bytes that the heap uses.
fn usable_len(len: usize) -> usize {
    len.min(MAX_REGION)
}

/// The offset just past the last block: the largest offset `≡ 8 (mod 16)` that is `<= len`, so that
/// every block header sits at `8 (mod 16)` and every payload at `0 (mod 16)`.
fn end_of(len: usize) -> usize {
    ((len - TAG) & !(ALIGN - 1)) + TAG
}

/// Where a heap keeps its words: the only access the allocator needs to its region.
///
/// The allocator reads and writes nothing but the 8-byte words of its region header and of the
/// block tags (never a payload byte), at offsets that are multiples of 8. [`Heap`] keeps them in a
/// byte slice; the shared segment keeps them in atomics (`shm.rs`), so that no process ever holds
/// a `&mut [u8]` over payload bytes that another process is reading at the same time.
pub(crate) trait Words {
    /// The region's length in bytes.
    fn len(&self) -> usize;
    /// The word at byte offset `at`.
    fn load(&self, at: usize) -> u64;
    /// Sets the word at byte offset `at`.
    fn store(&mut self, at: usize, value: u64);
}

impl Words for &mut [u8] {
    fn len(&self) -> usize {
        <[u8]>::len(self)
    }

    fn load(&self, at: usize) -> u64 {
        let mut bytes = [0; TAG];
        bytes.copy_from_slice(&self[at..at + TAG]);
        u64::from_le_bytes(bytes)
    }

    fn store(&mut self, at: usize, value: u64) {
        self[at..at + TAG].copy_from_slice(&value.to_le_bytes());
    }
}

/// The next-fit allocator over any [`Words`]: what [`Heap`] is over a byte slice, and what the
/// segment uses over its shared memory. All of its state is in the words.
pub(crate) struct NextFit<W> {
    words: W,
}

impl<W: Words> NextFit<W> {
    /// Writes an empty heap into `words` (see [`Heap::format`]).
    pub(crate) fn format(words: W) -> NextFit<W> {
        assert!(
            words.len() >= Heap::MIN_REGION,
            "a heap region needs at least {} bytes, got {}",
            Heap::MIN_REGION,
            words.len()
        );
        let len = usable_len(words.len());
        let mut heap = NextFit { words };
        heap.set_word(0, MAGIC);
        heap.set_word(OFF_LEN, len as u64);
        heap.set_rover(FIRST);
        let end = heap.end();
        heap.set_block(FIRST, end - FIRST, false);
        heap
    }

    /// Views words that [`format`](Self::format) formatted (see [`Heap::attach`]).
    pub(crate) fn attach(words: W) -> NextFit<W> {
        assert!(
            words.len() >= Heap::MIN_REGION,
            "a heap region needs at least {} bytes, got {}",
            Heap::MIN_REGION,
            words.len()
        );
        let len = usable_len(words.len());
        let heap = NextFit { words };
        assert!(
            heap.word(0) == MAGIC && heap.word(OFF_LEN) == len as u64,
            "the region is not a formatted heap of {len} bytes"
        );
        heap
    }

    /// See [`Heap::alloc`].
    pub(crate) fn alloc(&mut self, size: usize) -> Result<Option<usize>, HeapError> {
        let largest_possible = self.max_alloc();
        if size > largest_possible {
            return Err(HeapError {
                requested: size,
                largest_possible,
            });
        }
        let need = round_up(size) + OVERHEAD;
        let rover = self.rover_header();
        let mut at = rover;
        loop {
            let (block, used) = self.header(at);
            if !used && block >= need {
                let next = if block - need >= OVERHEAD {
                    self.set_block(at, need, true);
                    self.set_block(at + need, block - need, false);
                    at + need
                } else {
                    self.set_block(at, block, true);
                    self.wrap(at + block)
                };
                self.set_rover(next);
                return Ok(Some(at + TAG));
            }
            at = self.wrap(at + block);
            if at == rover {
                return Ok(None);
            }
        }
    }

    /// See [`Heap::free`].
    pub(crate) fn free(&mut self, offset: usize) {
        // Always checked: a bad free would corrupt a heap other processes share, and the check
        // reads two words that free reads anyway.
        assert!(
            self.is_live(offset),
            "Heap::free({offset}): not a live block of this heap (never allocated, already freed, \
             or not the offset alloc returned)"
        );
        let mut at = offset - TAG;
        let (mut size, _) = self.header(at);
        // Mark the block free before merging, so the header left inside a merged block reads "free" and
        // a second free of the same offset is caught.
        self.set_block(at, size, false);
        let right = at + size;
        if right < self.end() {
            let (right_size, right_used) = self.header(right);
            if !right_used {
                size += right_size;
            }
        }
        if at > FIRST {
            let (left_size, left_used) = self.decode(at - TAG);
            if !left_used {
                at -= left_size;
                size += left_size;
            }
        }
        self.set_block(at, size, false);
        let rover = self.rover_header();
        if at < rover && rover < at + size {
            self.set_rover(at);
        }
    }

    /// See [`Heap::free_bytes`].
    pub(crate) fn free_bytes(&self) -> usize {
        self.blocks()
            .filter(|block| !block.used)
            .map(|block| block.capacity)
            .sum()
    }

    /// See [`Heap::max_alloc`].
    pub(crate) fn max_alloc(&self) -> usize {
        self.end() - FIRST - OVERHEAD
    }

    /// See [`Heap::rover`].
    fn rover(&self) -> usize {
        self.rover_header() + TAG
    }

    /// See [`Heap::blocks`].
    fn blocks(&self) -> impl Iterator<Item = Block> + '_ {
        let end = self.end();
        let mut at = FIRST;
        std::iter::from_fn(move || {
            if at >= end {
                return None;
            }
            let (size, used) = self.header(at);
            let block = Block {
                offset: at + TAG,
                capacity: size - OVERHEAD,
                used,
            };
            at += size;
            Some(block)
        })
    }

    // Private helpers: words, tags and the rover.

    fn word(&self, at: usize) -> u64 {
        self.words.load(at)
    }

    fn set_word(&mut self, at: usize, value: u64) {
        self.words.store(at, value);
    }

    /// The offset just past the last block.
    fn end(&self) -> usize {
        end_of(usable_len(self.words.len()))
    }

    /// The header offset of the block after one ending at `at`: `at` itself, or the first block if `at`
    /// is the end.
    fn wrap(&self, at: usize) -> usize {
        if at == self.end() { FIRST } else { at }
    }

    fn rover_header(&self) -> usize {
        self.word(OFF_ROVER) as usize
    }

    fn set_rover(&mut self, at: usize) {
        self.set_word(OFF_ROVER, at as u64);
    }

    /// Decodes the header or footer word at `word`. Always checks the tag's magic and a minimal size: a
    /// corrupt tag would otherwise send a walk into a loop or out of the heap while every process waits
    /// on the caller's lock.
    fn decode(&self, word: usize) -> (usize, bool) {
        let value = self.word(word);
        let size = (value & !TAG_MAGIC_MASK & !(ALIGN as u64 - 1)) as usize;
        assert!(
            value & TAG_MAGIC_MASK == TAG_MAGIC && size >= OVERHEAD,
            "heap corrupted: bad block tag {value:#018x} at offset {word}"
        );
        (size, value & USED != 0)
    }

    /// Size and in-use bit of the block whose header is at `at`.
    fn header(&self, at: usize) -> (usize, bool) {
        self.decode(at)
    }

    /// Writes header and footer of a block of `size` bytes at `at`.
    fn set_block(&mut self, at: usize, size: usize, used: bool) {
        let value = tag(size, used);
        self.set_word(at, value);
        self.set_word(at + size - TAG, value);
    }

    /// Whether `offset` is the payload offset of an allocated block: on the block grid, inside the
    /// heap, with a used header and a matching footer. Never panics.
    fn is_live(&self, offset: usize) -> bool {
        let end = self.end();
        if offset < FIRST + TAG || offset > end - TAG || (offset - TAG - FIRST) % ALIGN != 0 {
            return false;
        }
        let at = offset - TAG;
        let value = self.word(at);
        let size = (value & !TAG_MAGIC_MASK & !(ALIGN as u64 - 1)) as usize;
        value & TAG_MAGIC_MASK == TAG_MAGIC
            && value & USED != 0
            && size >= OVERHEAD
            && size <= end - at
            && self.word(at + size - TAG) == value
    }

    /// Whether `offset..offset + len` lies in the payload of a live block.
    pub(crate) fn fits_block(&self, offset: usize, len: usize) -> bool {
        self.is_live(offset) && len <= self.header(offset - TAG).0 - OVERHEAD
    }
}

impl<'a> Heap<'a> {
    /// The smallest region [`Heap::format`] accepts: room for the heap header and one block with a
    /// 16-byte payload.
    ///
    /// # Examples
    ///
    /// ```
    /// use cspnet_processes::heap::Heap;
    ///
    /// let mut region = vec![0u8; Heap::MIN_REGION];
    /// let heap = Heap::format(&mut region);
    /// assert_eq!(heap.max_alloc(), 16);
    /// ```
    pub const MIN_REGION: usize = 64;

    /// Formats `region` as an empty heap: one free block spanning everything after the header.
    ///
    /// Any length from [`Heap::MIN_REGION`] up works, and the region need not be aligned: offsets are
    /// aligned to 16 relative to the region's start, so payloads are 16-aligned in memory when the region
    /// is (a mapped segment is page-aligned). Regions over 128 TiB are used only up to 128 TiB.
    ///
    /// # Panics
    ///
    /// If `region` is shorter than [`Heap::MIN_REGION`].
    ///
    /// # Examples
    ///
    /// ```
    /// use cspnet_processes::heap::Heap;
    ///
    /// let mut region = vec![0u8; 1000];
    /// let heap = Heap::format(&mut region);
    /// assert_eq!(heap.free_bytes(), heap.max_alloc());
    /// assert!(heap.max_alloc() > 900);
    /// ```
    pub fn format(region: &'a mut [u8]) -> Heap<'a> {
        Heap {
            core: NextFit::format(region),
        }
    }

    /// Views a region that [`Heap::format`] formatted, possibly in another process at another address.
    ///
    /// # Panics
    ///
    /// If `region` does not start with a formatted heap of the same length.
    ///
    /// # Examples
    ///
    /// ```
    /// use cspnet_processes::heap::Heap;
    ///
    /// let mut region = vec![0u8; 512];
    /// let at = Heap::format(&mut region).alloc(10)?.unwrap();
    /// let mut copy = region.clone();
    /// let mut heap = Heap::attach(&mut copy);
    /// heap.free(at);
    /// assert_eq!(heap.largest_free(), heap.max_alloc());
    /// # Ok::<(), cspnet_processes::heap::HeapError>(())
    /// ```
    pub fn attach(region: &'a mut [u8]) -> Heap<'a> {
        Heap {
            core: NextFit::attach(region),
        }
    }

    /// Allocates `size` bytes by next fit: the search starts at the rover, walks the blocks in address
    /// order, wraps around once, and takes the first free block that fits, splitting off the rest if it
    /// is at least 16 bytes. The rover then moves to the block after the allocation.
    ///
    /// Returns `Ok(Some(offset))`, where `region[offset..offset + size]` is the payload; `Ok(None)` when no
    /// free block is large enough now (the rover does not move; free something and retry); and
    /// `Err(HeapError)` when `size` exceeds [`Heap::max_alloc`], so it can never fit. A zero-byte
    /// allocation takes a 16-byte block of its own, so its offset is distinct from every other live one
    /// and [`Heap::free`] accepts it like any other.
    ///
    /// # Examples
    ///
    /// ```
    /// use cspnet_processes::heap::Heap;
    ///
    /// let mut region = vec![0u8; 128];
    /// let mut heap = Heap::format(&mut region);
    /// let max = heap.max_alloc();
    /// assert!(heap.alloc(max + 1).is_err()); // never fits
    /// let all = heap.alloc(max)?.unwrap(); // exactly fills the heap
    /// assert_eq!(heap.alloc(0)?, None); // not now
    /// heap.free(all);
    /// assert!(heap.alloc(0)?.is_some()); // now it does
    /// # Ok::<(), cspnet_processes::heap::HeapError>(())
    /// ```
    pub fn alloc(&mut self, size: usize) -> Result<Option<usize>, HeapError> {
        self.core.alloc(size)
    }

    /// Frees a block that [`Heap::alloc`] returned, merging it with a free neighbour on either side so
    /// that no two free blocks are ever adjacent. If the rover pointed at a block that the merge
    /// swallowed, it moves to the start of the merged block.
    ///
    /// Freeing an offset that is not a live block (never allocated, or already freed) is a bug in the
    /// caller; it is detected from the block's tags (in every build) and panics.
    ///
    /// # Examples
    ///
    /// ```
    /// use cspnet_processes::heap::Heap;
    ///
    /// let mut region = vec![0u8; 256];
    /// let mut heap = Heap::format(&mut region);
    /// let a = heap.alloc(16)?.unwrap();
    /// let b = heap.alloc(16)?.unwrap();
    /// heap.free(a);
    /// heap.free(b); // merges with `a` on its left and the free rest on its right
    /// assert_eq!(heap.blocks().count(), 1);
    /// # Ok::<(), cspnet_processes::heap::HeapError>(())
    /// ```
    pub fn free(&mut self, offset: usize) {
        self.core.free(offset);
    }

    /// The largest size [`Heap::alloc`] can ever satisfy: the payload of the single free block of an
    /// empty heap. At most 55 bytes less than the region's length.
    ///
    /// # Examples
    ///
    /// ```
    /// use cspnet_processes::heap::Heap;
    ///
    /// let mut region = vec![0u8; 4096];
    /// let heap = Heap::format(&mut region);
    /// assert_eq!(heap.max_alloc(), 4096 - 48);
    /// ```
    pub fn max_alloc(&self) -> usize {
        self.core.max_alloc()
    }

    /// Payload bytes in free blocks now: the sum of their capacities, headers and footers excluded.
    /// Walks every block.
    ///
    /// # Examples
    ///
    /// ```
    /// use cspnet_processes::heap::Heap;
    ///
    /// let mut region = vec![0u8; 4096];
    /// let mut heap = Heap::format(&mut region);
    /// heap.alloc(100)?.unwrap(); // takes 112 bytes of payload and 16 of tags
    /// assert_eq!(heap.free_bytes(), heap.max_alloc() - 112 - 16);
    /// # Ok::<(), cspnet_processes::heap::HeapError>(())
    /// ```
    pub fn free_bytes(&self) -> usize {
        self.core.free_bytes()
    }

    /// The capacity of the largest free block: the largest size [`Heap::alloc`] can satisfy now. It is 0
    /// both when no block is free and when the only free blocks have capacity 0 (16 bytes of tags,
    /// enough for a zero-byte payload). Walks every block.
    ///
    /// # Examples
    ///
    /// ```
    /// use cspnet_processes::heap::Heap;
    ///
    /// let mut region = vec![0u8; 4096];
    /// let mut heap = Heap::format(&mut region);
    /// let n = heap.largest_free();
    /// assert!(heap.alloc(n)?.is_some());
    /// assert_eq!(heap.largest_free(), 0);
    /// # Ok::<(), cspnet_processes::heap::HeapError>(())
    /// ```
    pub fn largest_free(&self) -> usize {
        self.blocks()
            .filter(|block| !block.used)
            .map(|block| block.capacity)
            .max()
            .unwrap_or(0)
    }

    /// The payload bytes `region[offset..offset + len]` of an allocated block.
    ///
    /// # Panics
    ///
    /// If `offset` is not a live block or `len` exceeds its capacity.
    ///
    /// # Examples
    ///
    /// ```
    /// use cspnet_processes::heap::Heap;
    ///
    /// let mut region = vec![0u8; 256];
    /// let mut heap = Heap::format(&mut region);
    /// let at = heap.alloc(3)?.unwrap();
    /// heap.bytes_mut(at, 3).copy_from_slice(&[1, 2, 3]);
    /// assert_eq!(heap.bytes(at, 3), &[1, 2, 3]);
    /// # Ok::<(), cspnet_processes::heap::HeapError>(())
    /// ```
    pub fn bytes(&self, offset: usize, len: usize) -> &[u8] {
        assert!(
            self.core.fits_block(offset, len),
            "Heap::bytes({offset}, {len}): not inside a live block"
        );
        &self.core.words[offset..offset + len]
    }

    /// The payload bytes `region[offset..offset + len]` of an allocated block, to write.
    ///
    /// # Panics
    ///
    /// As [`Heap::bytes`].
    ///
    /// # Examples
    ///
    /// ```
    /// use cspnet_processes::heap::Heap;
    ///
    /// let mut region = vec![0u8; 256];
    /// let mut heap = Heap::format(&mut region);
    /// let at = heap.alloc(4)?.unwrap();
    /// heap.bytes_mut(at, 4).copy_from_slice(b"ping");
    /// assert_eq!(&region[at..at + 4], b"ping");
    /// # Ok::<(), cspnet_processes::heap::HeapError>(())
    /// ```
    pub fn bytes_mut(&mut self, offset: usize, len: usize) -> &mut [u8] {
        assert!(
            self.core.fits_block(offset, len),
            "Heap::bytes_mut({offset}, {len}): not inside a live block"
        );
        &mut self.core.words[offset..offset + len]
    }

    /// The payload offset of the block where the next [`Heap::alloc`] starts its search (the rover).
    /// For diagnostics and tests: it always names a block that [`Heap::blocks`] lists.
    ///
    /// # Examples
    ///
    /// ```
    /// use cspnet_processes::heap::Heap;
    ///
    /// let mut region = vec![0u8; 256];
    /// let mut heap = Heap::format(&mut region);
    /// let a = heap.alloc(16)?.unwrap();
    /// assert_eq!(heap.rover(), a + 32); // the free rest, just after `a`
    /// # Ok::<(), cspnet_processes::heap::HeapError>(())
    /// ```
    pub fn rover(&self) -> usize {
        self.core.rover()
    }

    /// Every block in address order, used and free, from the first to the last. For diagnostics and
    /// tests.
    ///
    /// # Examples
    ///
    /// ```
    /// use cspnet_processes::heap::Heap;
    ///
    /// let mut region = vec![0u8; 256];
    /// let mut heap = Heap::format(&mut region);
    /// heap.alloc(1)?.unwrap();
    /// heap.alloc(0)?.unwrap();
    /// let used: Vec<bool> = heap.blocks().map(|block| block.used).collect();
    /// assert_eq!(used, [true, true, false]);
    /// # Ok::<(), cspnet_processes::heap::HeapError>(())
    /// ```
    pub fn blocks(&self) -> impl Iterator<Item = Block> + '_ {
        self.core.blocks()
    }
}

impl fmt::Debug for Heap<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Heap")
            .field("max_alloc", &self.max_alloc())
            .field("rover", &self.rover())
            .field("blocks", &self.blocks().collect::<Vec<_>>())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A heap over `len` bytes, for tests that build their own.
    fn region(len: usize) -> Vec<u8> {
        vec![0xAA; len]
    }

    /// The blocks as `(capacity, used)`, the shape most tests check.
    fn shape(heap: &Heap<'_>) -> Vec<(usize, bool)> {
        heap.blocks().map(|b| (b.capacity, b.used)).collect()
    }

    #[test]
    fn format_makes_one_free_block() {
        let mut bytes = region(1024);
        let heap = Heap::format(&mut bytes);
        assert_eq!(heap.max_alloc(), 1024 - 48);
        assert_eq!(shape(&heap), [(1024 - 48, false)]);
        assert_eq!(heap.free_bytes(), heap.max_alloc());
        assert_eq!(heap.largest_free(), heap.max_alloc());
        assert_eq!(heap.rover(), 32);
    }

    #[test]
    fn format_accepts_any_length_from_the_minimum() {
        for len in Heap::MIN_REGION..Heap::MIN_REGION + 64 {
            let mut bytes = region(len);
            let mut heap = Heap::format(&mut bytes);
            let max = heap.max_alloc();
            assert!(len - max <= 55 && max % 16 == 0, "len {len}: max {max}");
            let at = heap.alloc(max).unwrap().unwrap();
            assert!(at + max <= len);
            heap.free(at);
            assert_eq!(heap.largest_free(), max);
        }
    }

    #[test]
    #[should_panic(expected = "at least 64 bytes")]
    fn format_rejects_a_short_region() {
        let mut bytes = region(Heap::MIN_REGION - 1);
        Heap::format(&mut bytes);
    }

    #[test]
    fn alloc_and_free_basics() {
        let mut bytes = region(1024);
        let mut heap = Heap::format(&mut bytes);
        let a = heap.alloc(10).unwrap().unwrap();
        assert_eq!(a % 16, 0);
        heap.bytes_mut(a, 10).copy_from_slice(b"0123456789");
        let b = heap.alloc(10).unwrap().unwrap();
        assert_eq!(b, a + 32, "the second block follows the first");
        heap.bytes_mut(b, 10).fill(7);
        assert_eq!(heap.bytes(a, 10), b"0123456789");
        assert_eq!(heap.free_bytes(), heap.max_alloc() - 2 * 32);
        heap.free(a);
        heap.free(b);
        assert_eq!(shape(&heap), [(1024 - 48, false)]);
    }

    #[test]
    fn zero_size_allocs_are_distinct_blocks() {
        let mut bytes = region(256);
        let mut heap = Heap::format(&mut bytes);
        let a = heap.alloc(0).unwrap().unwrap();
        let b = heap.alloc(0).unwrap().unwrap();
        assert_ne!(a, b);
        assert!(heap.bytes(a, 0).is_empty());
        assert_eq!(shape(&heap)[..2], [(0, true), (0, true)]);
        heap.free(a);
        heap.free(b);
        assert_eq!(heap.largest_free(), heap.max_alloc());
    }

    #[test]
    fn alloc_splits_and_takes_an_exact_fit_whole() {
        let mut bytes = region(224); // 192 bytes of blocks: max_alloc 176
        let mut heap = Heap::format(&mut bytes);
        assert_eq!(heap.max_alloc(), 176);
        heap.alloc(100).unwrap().unwrap(); // 112 + 16: the rest is 64 bytes of block
        assert_eq!(shape(&heap), [(112, true), (48, false)]);
        heap.alloc(40).unwrap().unwrap(); // needs 48 + 16: takes the rest whole
        assert_eq!(shape(&heap), [(112, true), (48, true)]);

        let mut bytes = region(224);
        let mut heap = Heap::format(&mut bytes);
        heap.alloc(100).unwrap().unwrap();
        heap.alloc(16).unwrap().unwrap(); // needs 32 of 64: splits off a 32-byte block
        assert_eq!(shape(&heap), [(112, true), (16, true), (16, false)]);
        heap.alloc(16).unwrap().unwrap();
        assert_eq!(heap.alloc(0).unwrap(), None, "the heap is full");
    }

    /// Four used blocks of capacity 16 and the free rest: [a b c d rest].
    fn four(bytes: &mut [u8]) -> (Heap<'_>, [usize; 4]) {
        let mut heap = Heap::format(bytes);
        let blocks = [(); 4].map(|()| heap.alloc(16).unwrap().unwrap());
        (heap, blocks)
    }

    #[test]
    fn free_coalesces_with_the_left_neighbour() {
        let mut bytes = region(512);
        let (mut heap, [a, b, _, _]) = four(&mut bytes);
        heap.free(a);
        heap.free(b);
        assert_eq!(shape(&heap)[..3], [(48, false), (16, true), (16, true)]);
    }

    #[test]
    fn free_coalesces_with_the_right_neighbour() {
        let mut bytes = region(512);
        let (mut heap, [_, b, c, _]) = four(&mut bytes);
        heap.free(c);
        heap.free(b);
        assert_eq!(shape(&heap)[..3], [(16, true), (48, false), (16, true)]);
    }

    #[test]
    fn free_coalesces_with_both_neighbours() {
        let mut bytes = region(512);
        let (mut heap, [a, b, c, d]) = four(&mut bytes);
        heap.free(a);
        heap.free(c);
        heap.free(b);
        assert_eq!(shape(&heap)[..2], [(80, false), (16, true)]);
        heap.free(d);
        assert_eq!(shape(&heap), [(heap.max_alloc(), false)]);
    }

    #[test]
    fn the_rover_resumes_after_the_last_allocation() {
        let mut bytes = region(512);
        let (mut heap, [a, b, c, _]) = four(&mut bytes);
        heap.free(a);
        heap.free(c);
        // First fit would take `a`'s hole; next fit starts at the rover, past `d`.
        let e = heap.alloc(16).unwrap().unwrap();
        assert!(e > c, "next fit took {e}, behind the rover");
        assert_eq!(heap.rover(), e + 32);
        // `b`'s neighbours are holes; its free merges them and the rover stays put.
        heap.free(b);
        assert_eq!(heap.rover(), e + 32);
    }

    #[test]
    fn the_rover_wraps_around() {
        let mut bytes = region(224); // 192 bytes of blocks: six 16-byte payloads with their tags
        let mut heap = Heap::format(&mut bytes);
        let blocks = [(); 6].map(|()| heap.alloc(16).unwrap().unwrap());
        assert_eq!(
            heap.rover(),
            blocks[0],
            "the heap is full: the rover wrapped to the start"
        );
        heap.free(blocks[4]);
        heap.free(blocks[1]);
        // The search starts at blocks[0] and finds blocks[1]'s hole first.
        assert_eq!(heap.alloc(16).unwrap(), Some(blocks[1]));
        assert_eq!(heap.rover(), blocks[2]);
        // Now it passes blocks[2..4] and takes blocks[4]'s hole.
        assert_eq!(heap.alloc(0).unwrap(), Some(blocks[4]));
        heap.free(blocks[0]);
        // The rover is at blocks[4]'s remainder, which fits a zero-byte payload exactly.
        assert_eq!(heap.alloc(0).unwrap(), Some(blocks[4] + 16));
        assert_eq!(heap.rover(), blocks[5]);
        // Past blocks[5] to the end, then around to blocks[0]'s hole.
        assert_eq!(heap.alloc(16).unwrap(), Some(blocks[0]));
        assert_eq!(heap.rover(), blocks[1]);
    }

    #[test]
    fn freeing_the_block_before_the_rover_moves_the_rover_to_the_merge() {
        let mut bytes = region(512);
        let (mut heap, [_, _, _, d]) = four(&mut bytes);
        let rest = heap.rover();
        assert_eq!(rest, d + 32);
        heap.free(d);
        assert_eq!(heap.rover(), d, "the rover's block was swallowed by `d`");
        assert_eq!(heap.blocks().last().map(|b| b.offset), Some(d));
    }

    #[test]
    fn too_large_is_an_error_and_exact_fill_succeeds() {
        let mut bytes = region(1000);
        let mut heap = Heap::format(&mut bytes);
        let max = heap.max_alloc();
        let err = heap.alloc(max + 1).unwrap_err();
        assert_eq!(
            err,
            HeapError {
                requested: max + 1,
                largest_possible: max
            }
        );
        assert_eq!(
            err.to_string(),
            format!(
                "a payload of {} bytes can never fit: the channel heap holds at most {max} bytes per payload",
                max + 1
            )
        );
        assert!(heap.alloc(usize::MAX).is_err());
        let all = heap.alloc(max).unwrap().unwrap();
        heap.bytes_mut(all, max).fill(1);
        assert_eq!(heap.free_bytes(), 0);
        assert_eq!(heap.largest_free(), 0);
    }

    #[test]
    fn full_is_none_until_a_free() {
        let mut bytes = region(512);
        let mut heap = Heap::format(&mut bytes);
        let mut live = Vec::new();
        while let Some(at) = heap.alloc(100).unwrap() {
            live.push(at);
        }
        assert_eq!(live.len(), 3);
        let rover = heap.rover();
        assert_eq!(heap.alloc(100).unwrap(), None);
        assert_eq!(
            heap.rover(),
            rover,
            "a failed search leaves the rover alone"
        );
        heap.free(live[1]);
        assert_eq!(heap.alloc(100).unwrap(), Some(live[1]));
    }

    #[test]
    fn attach_sees_the_same_heap() {
        let mut bytes = region(1024);
        let mut heap = Heap::format(&mut bytes);
        let a = heap.alloc(30).unwrap().unwrap();
        let b = heap.alloc(50).unwrap().unwrap();
        heap.bytes_mut(b, 5).copy_from_slice(b"hello");
        heap.free(a);
        let (blocks, rover) = (heap.blocks().collect::<Vec<_>>(), heap.rover());

        let mut copy = bytes.clone();
        let mut other = Heap::attach(&mut copy);
        assert_eq!(other.blocks().collect::<Vec<_>>(), blocks);
        assert_eq!(other.rover(), rover);
        assert_eq!(other.bytes(b, 5), b"hello");
        other.free(b);
        assert_eq!(shape(&other), [(1024 - 48, false)]);
    }

    #[test]
    #[should_panic(expected = "not a formatted heap")]
    fn attach_rejects_unformatted_bytes() {
        let mut bytes = region(1024);
        Heap::attach(&mut bytes);
    }

    #[test]
    #[should_panic(expected = "not a formatted heap")]
    fn attach_rejects_another_length() {
        let mut bytes = region(1024);
        Heap::format(&mut bytes);
        Heap::attach(&mut bytes[..1000]);
    }

    #[test]
    #[should_panic(expected = "not a live block")]
    fn double_free_panics_in_debug_builds() {
        let mut bytes = region(512);
        let (mut heap, [a, b, _, _]) = four(&mut bytes);
        heap.free(a);
        heap.free(b); // merges into `a`: b's stale header must still read "free"
        heap.free(b);
    }

    #[test]
    #[should_panic(expected = "not a live block")]
    fn freeing_a_wild_offset_panics_in_debug_builds() {
        let mut bytes = region(512);
        let mut heap = Heap::format(&mut bytes);
        let a = heap.alloc(64).unwrap().unwrap();
        heap.free(a + 16);
    }

    #[test]
    fn heap_error_is_an_error() {
        let err: Box<dyn std::error::Error> = Box::new(HeapError {
            requested: 10,
            largest_possible: 5,
        });
        assert_eq!(
            err.to_string(),
            "a payload of 10 bytes can never fit: the channel heap holds at most 5 bytes per payload"
        );
    }
}
