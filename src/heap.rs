//! The operator's live heap, counted: a global allocator that wraps the system's and keeps the
//! bytes allocated now and at most, for the `cloudphone_heap_bytes` metrics and the benchmarks.
//! Resident memory (RSS) also holds what the allocator keeps after frees; this is what is live.

// The one module allowed unsafe code (Cargo.toml's [lints] denies it elsewhere): a `GlobalAlloc`
// impl cannot be written without it.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

/// The system allocator, counting. Install it in a binary with `#[global_allocator]`.
pub struct Counting;

// SAFETY: every call is forwarded unchanged to the system allocator; only counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract for `alloc` is passed on as is.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            grew(layout.size());
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            grew(layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as for `alloc`.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            if new_size >= layout.size() {
                grew(new_size - layout.size());
            } else {
                LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        new
    }
}

fn grew(bytes: usize) {
    let live = LIVE.fetch_add(bytes, Ordering::Relaxed) + bytes;
    // NB: a plain load first: below the peak, as almost every allocation is, no second locked
    // instruction.
    if live > PEAK.load(Ordering::Relaxed) {
        PEAK.fetch_max(live, Ordering::Relaxed);
    }
}

/// Bytes allocated and not freed, and the most there ever were (both 0 when [`Counting`] is not
/// the process's allocator).
pub fn bytes() -> (usize, usize) {
    (LIVE.load(Ordering::Relaxed), PEAK.load(Ordering::Relaxed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocations_are_counted_until_freed_and_the_peak_stays() {
        // NB: in this test binary `Counting` is not the global allocator: only these calls count.
        let layout = Layout::from_size_align(4096, 8).unwrap();
        let (live0, _) = bytes();
        // SAFETY: a non-zero layout; the pointers are freed with the layouts they were made with.
        unsafe {
            let a = Counting.alloc(layout);
            assert!(!a.is_null());
            assert_eq!(bytes().0, live0 + 4096);
            let b = Counting.realloc(a, layout, 8192);
            assert_eq!(bytes().0, live0 + 8192);
            Counting.dealloc(b, Layout::from_size_align(8192, 8).unwrap());
        }
        let (live, peak) = bytes();
        assert_eq!(live, live0);
        assert!(peak >= live0 + 8192);
    }
}
