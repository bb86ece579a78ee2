//! Process settings of xtask and of the criterion benches (which include this file with
//! `#[path]`): the allocator (mimalloc, keeping freed memory) and how long candle's idle
//! worker threads spin. [`configure`] applies them; call it first thing in `main`.

/// Applies [`keep_freed_memory`] and [`limit_candle_spinning`].
pub fn configure() {
    keep_freed_memory();
    limit_candle_spinning();
}

/// The spin count candle's barrier-pool workers wait for work before parking, unless the
/// environment sets `CANDLE_BARRIER_POOL_SPIN_LIMIT`.
const CANDLE_SPIN_LIMIT: &str = "200";

/// candle 0.11 runs its element-wise ops on a pool of its own threads, beside rayon's (our
/// kernels'). Its idle workers spin 25,000 times (about half a millisecond) after each op
/// before parking, on cores where rayon's threads are then running a convolution. On 2
/// cores (three interleaved runs each) the median ResNet-18 training step (batch 64, 32x32)
/// took 183-227 ms, against 136-182 ms with 200 spins, and LeNet-5 trained at 13.5-15.1k
/// images/s against 18.0-18.8k. 200 spins (a few microseconds) keep the pool's quick
/// hand-offs between back-to-back ops without the contention. Must run before candle's first
/// element-wise op creates the pool.
pub fn limit_candle_spinning() {
    if std::env::var_os("CANDLE_BARRIER_POOL_SPIN_LIMIT").is_none() {
        std::env::set_var("CANDLE_BARRIER_POOL_SPIN_LIMIT", CANDLE_SPIN_LIMIT);
    }
}

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
    fn candle_spin_limit_is_set_unless_the_environment_has_one() {
        super::limit_candle_spinning();
        assert!(std::env::var("CANDLE_BARRIER_POOL_SPIN_LIMIT").is_ok_and(|v| v.parse::<u32>().is_ok()));
    }

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
