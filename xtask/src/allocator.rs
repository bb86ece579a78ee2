//! The allocator of xtask and of the criterion benches (which include this file with
//! `#[path]`): mimalloc, keeping freed memory.

/// Training allocates and frees the same large activation buffers every step. glibc's malloc
/// returns blocks above its mmap threshold to the kernel on every free, so each step pays page
/// faults on fresh memory; mimalloc keeps and reuses them (see [`keep_freed_memory`]).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc's `mi_option_e` (v2 and v3; `libmimalloc-sys` does not
/// export the constant). `tests::purge_delay_option_is_the_one_set` checks it against the
/// option's default.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Tells mimalloc never to hand freed memory back to the kernel. By default it purges free
/// pages after a delay, and the next training step faults them in again, zeroed by the
/// kernel: on a ResNet-50 step (batch 8, 2 cores) that was ~200k page faults per run and
/// ~8% of the step time. Peak memory is unchanged (the pages are reused, not added to).
pub fn keep_freed_memory() {
    // SAFETY: `mi_option_set` stores an integer option in mimalloc's option table; -1 is a
    // documented value of `purge_delay` ("no purging at all"), and the call is thread-safe.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) }
}

#[cfg(test)]
mod tests {
    /// Option 15 is `purge_delay`: its default is mimalloc's purge delay in milliseconds
    /// (1000 in v3, 10 in v2) unless the environment sets it, and it takes the -1 we set.
    #[test]
    fn purge_delay_option_is_the_one_set() {
        // SAFETY: reading an option is thread-safe and has no precondition.
        let get = || unsafe { libmimalloc_sys::mi_option_get(super::MI_OPTION_PURGE_DELAY) };
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            assert!(
                matches!(get(), 1000 | 10),
                "option 15 is {}, not a purge delay",
                get()
            );
        }
        super::keep_freed_memory();
        assert_eq!(get(), -1);
    }
}
