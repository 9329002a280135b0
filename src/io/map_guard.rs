//! A clear error instead of a silent SIGBUS when a mapped input file shrinks under the
//! process (another program truncated or rewrote it while it was being read).
//!
//! Every mapping of [`FileBytes`](super::FileBytes) is registered here with its file's path.
//! A SIGBUS whose fault address lies inside a registered mapping prints
//! `error: PATH: offset N: the file was truncated or replaced while it was being read` on
//! stderr and ends the process with exit code 2 (async-signal-safe: `write` and `_exit` only,
//! no allocation). Nothing is committed then: output files are still under their temporary
//! names (key pairs are cleaned up by the next run, `keystore::recover_pair`). A SIGBUS
//! elsewhere gets the default action.

#[cfg(unix)]
mod imp {
    use std::sync::Once;
    use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

    const SLOTS: usize = 256;

    struct Slot {
        start: AtomicUsize,
        len: AtomicUsize,
        /// A leaked, NUL-free byte string of the path (never freed: a few per run).
        name: AtomicPtr<u8>,
        name_len: AtomicUsize,
    }

    #[allow(clippy::declare_interior_mutable_const)]
    const EMPTY: Slot = Slot {
        start: AtomicUsize::new(0),
        len: AtomicUsize::new(0),
        name: AtomicPtr::new(std::ptr::null_mut()),
        name_len: AtomicUsize::new(0),
    };
    static TABLE: [Slot; SLOTS] = [EMPTY; SLOTS];
    static INSTALL: Once = Once::new();

    fn write_all(bytes: &[u8]) {
        let mut b = bytes;
        while !b.is_empty() {
            // SAFETY: write(2) on stderr with a valid buffer; async-signal-safe.
            let n = unsafe { libc::write(2, b.as_ptr().cast(), b.len()) };
            if n <= 0 {
                return;
            }
            b = &b[n as usize..];
        }
    }

    fn write_u64(mut v: u64) {
        let mut buf = [0u8; 20];
        let mut i = buf.len();
        loop {
            i -= 1;
            buf[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        write_all(&buf[i..]);
    }

    extern "C" fn on_sigbus(sig: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
        // SAFETY: the kernel passes a valid siginfo for an SA_SIGINFO handler.
        let addr = unsafe { (*info).si_addr() } as usize;
        for s in &TABLE {
            let start = s.start.load(Ordering::Acquire);
            let len = s.len.load(Ordering::Acquire);
            if start != 0 && addr >= start && addr < start + len {
                let name = s.name.load(Ordering::Acquire);
                let name_len = s.name_len.load(Ordering::Acquire);
                write_all(b"error: ");
                if !name.is_null() {
                    // SAFETY: a leaked allocation of name_len bytes, never freed.
                    write_all(unsafe { std::slice::from_raw_parts(name, name_len) });
                }
                write_all(b": offset ");
                write_u64((addr - start) as u64);
                write_all(
                    b": the file was truncated or replaced while it was being read \
(do not modify an input during a run); nothing was committed\n",
                );
                // SAFETY: _exit is async-signal-safe.
                unsafe { libc::_exit(2) };
            }
        }
        // Not ours: the default action (the fault repeats and ends the process).
        // SAFETY: resetting a signal disposition; async-signal-safe.
        unsafe {
            libc::signal(sig, libc::SIG_DFL);
        }
    }

    fn install() {
        INSTALL.call_once(|| {
            // SAFETY: a zeroed sigaction with our handler, SA_SIGINFO, an empty mask.
            unsafe {
                let mut sa: libc::sigaction = std::mem::zeroed();
                sa.sa_sigaction = on_sigbus as *const () as usize;
                sa.sa_flags = libc::SA_SIGINFO;
                libc::sigemptyset(&mut sa.sa_mask);
                libc::sigaction(libc::SIGBUS, &sa, std::ptr::null_mut());
            }
        });
    }

    /// Register `[start, start + len)` as the mapping of `path`; returns its slot.
    pub fn register(start: usize, len: usize, path: &std::path::Path) -> Option<usize> {
        install();
        use std::os::unix::ffi::OsStrExt;
        let bytes: Box<[u8]> = path.as_os_str().as_bytes().into();
        let name_len = bytes.len();
        let name = Box::leak(bytes).as_mut_ptr();
        for (i, s) in TABLE.iter().enumerate() {
            if s.start
                .compare_exchange(0, usize::MAX, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                s.name.store(name, Ordering::Release);
                s.name_len.store(name_len, Ordering::Release);
                s.len.store(len, Ordering::Release);
                s.start.store(start, Ordering::Release);
                return Some(i);
            }
        }
        None
    }

    /// Forget a mapping (before it is unmapped).
    pub fn unregister(slot: usize) {
        TABLE[slot].start.store(0, Ordering::Release);
    }
}

#[cfg(unix)]
pub use imp::{register, unregister};

/// No mapping guard off Unix (Windows raises an exception the runtime reports).
#[cfg(not(unix))]
pub fn register(_start: usize, _len: usize, _path: &std::path::Path) -> Option<usize> {
    None
}

/// No mapping guard off Unix.
#[cfg(not(unix))]
pub fn unregister(_slot: usize) {}
