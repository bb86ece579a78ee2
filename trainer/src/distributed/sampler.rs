//! Each rank's shard of an epoch, as torch's `DistributedSampler` makes it (with `shuffle` and
//! `drop_last=False`): the epoch's order (the same seeded permutation on every rank) is padded
//! by repeating its first indices up to a multiple of the world size, and rank `r` takes the
//! positions `r, r + world, r + 2 world, ...`. Every rank has `ceil(len / world)` indices; each
//! index is in exactly one shard, except the `world * ceil(len / world) - len` padding repeats.

/// The number of indices of each rank's shard of `len` indices: `ceil(len / world)`.
pub fn shard_len(len: usize, world: usize) -> usize {
    len.div_ceil(world.max(1))
}

/// Rank `rank`'s shard of the epoch order `order` over `world` ranks (see the module docs).
/// With one rank, `order` itself.
pub fn shard_indices(order: &[usize], rank: usize, world: usize) -> Vec<usize> {
    let world = world.max(1);
    if order.is_empty() || world == 1 {
        return order.to_vec();
    }
    let total = shard_len(order.len(), world) * world;
    (rank..total)
        .step_by(world)
        .map(|i| order[i % order.len()])
        .collect()
}

/// Rank `rank`'s part of `order` for evaluation: the positions `rank, rank + world, ...` below
/// `order.len()`, without padding, so that every index is in exactly one part (the ranks' sums
/// of metrics then count each image once; the parts differ in length by at most one, and a
/// rank past the end has none).
pub fn split_indices_exact(order: &[usize], rank: usize, world: usize) -> Vec<usize> {
    order.iter().skip(rank).step_by(world.max(1)).copied().collect()
}
