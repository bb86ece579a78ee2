//! Data-parallel training without an engine: the shards of an epoch (torch's
//! `DistributedSampler`), the loader over a shard, the launch checks and the global batch.

use std::collections::HashMap;
use std::sync::Arc;
use trainer::data::{DataLoader, Dataset, GrayImages, ImageDataset, LoaderConfig, Mnist, Preprocess};
use trainer::distributed::{
    agree, local_batch, shard_indices, shard_len, split_indices_exact, LaunchCheck, SingleProcess,
};

#[test]
fn shards_cover_every_index_once_padded_to_equal_lengths() {
    for len in [1usize, 2, 7, 10, 64, 101] {
        for world in 1..=5 {
            let order: Vec<usize> = (0..len).rev().collect();
            let shards: Vec<Vec<usize>> = (0..world).map(|r| shard_indices(&order, r, world)).collect();
            let per_rank = shard_len(len, world);
            assert!(
                shards.iter().all(|s| s.len() == per_rank),
                "len {len} world {world}"
            );
            // Interleaved back, the shards are the order followed by its first indices.
            let mut interleaved = Vec::new();
            for i in 0..per_rank {
                for shard in &shards {
                    interleaved.push(shard[i]);
                }
            }
            // The padding repeats the order from its start (cycling when it is longer).
            let padding = per_rank * world - len;
            assert!(padding < world);
            assert_eq!(&interleaved[..len], &order[..], "len {len} world {world}");
            let repeated: Vec<usize> = (0..padding).map(|i| order[i % len]).collect();
            assert_eq!(&interleaved[len..], &repeated[..]);
            // Every index once, plus its repeats in the padding.
            let mut count = vec![0; len];
            interleaved.iter().for_each(|&i| count[i] += 1);
            for (i, &c) in count.iter().enumerate() {
                assert_eq!(c, 1 + repeated.iter().filter(|&&r| r == i).count());
            }
        }
    }
}

fn loader(n: usize, batch: usize, seed: u64) -> DataLoader {
    let mnist = Mnist::bundled().unwrap();
    let images: ImageDataset = mnist.test.head(n);
    let data: Arc<dyn Dataset> = Arc::new(GrayImages::new(images, "test").unwrap());
    let config = LoaderConfig {
        seed,
        ..LoaderConfig::new(batch)
    };
    DataLoader::new(data, Preprocess::mnist().pipeline(None).unwrap(), config).unwrap()
}

#[test]
fn sharded_loaders_read_each_image_once_per_epoch_in_the_same_permutation() {
    let (n, world) = (60, 3);
    let whole = loader(n, 20, 9);
    let shards: Vec<DataLoader> = (0..world)
        .map(|r| loader(n, 20 / world + 1, 9).with_shard(r, world).unwrap())
        .collect();
    for epoch in 0..3 {
        let order = whole.order(epoch);
        let mut seen = vec![0; n];
        for (rank, shard) in shards.iter().enumerate() {
            let mine = shard.order(epoch);
            assert_eq!(mine.len(), n / world);
            // Rank r reads positions r, r + world, ... of the one seeded permutation.
            let expected: Vec<usize> = order.iter().copied().skip(rank).step_by(world).collect();
            assert_eq!(mine, expected, "epoch {epoch} rank {rank}");
            mine.iter().for_each(|&i| seen[i] += 1);
            // The batches read exactly those images.
            let labels: Vec<u32> = shard
                .epoch(epoch, &candle_core::Device::Cpu)
                .flat_map(|b| {
                    let labels = b.unwrap().labels;
                    labels
                        .to_dtype(candle_core::DType::U32)
                        .unwrap()
                        .to_vec1::<u32>()
                        .unwrap()
                })
                .collect();
            let wanted: Vec<u32> = mine
                .iter()
                .map(|&i| whole.dataset().label(i).unwrap() as u32)
                .collect();
            assert_eq!(labels, wanted);
        }
        assert!(seen.iter().all(|&c| c == 1), "epoch {epoch}: {seen:?}");
    }
    assert_ne!(
        shards[0].order(0),
        shards[0].order(1),
        "each epoch has its own permutation"
    );
    assert!(loader(n, 4, 9).with_shard(3, 3).is_err());
}

#[test]
fn the_world_size_must_divide_the_global_batch() {
    assert_eq!(local_batch(64, 4).unwrap(), 16);
    assert_eq!(local_batch(7, 1).unwrap(), 7);
    let err = local_batch(64, 3).unwrap_err().to_string();
    assert!(err.contains("multiple of the world size (3"), "{err}");
    assert!(local_batch(2, 4).is_err());
}

#[test]
fn wrong_launches_are_refused() {
    let env = |pairs: &[(&str, &str)]| {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name: &str| map.get(name).cloned()
    };
    let none = env(&[]);
    // --distributed in a build without an engine.
    let no_engine = LaunchCheck {
        distributed: true,
        engine_built: false,
    };
    let err = no_engine.check(&none).unwrap_err().to_string();
    assert!(err.contains("--features mpi"), "{err}");
    // mpirun (OpenMPI, or a PMI launcher) without --distributed.
    let plain = LaunchCheck {
        distributed: false,
        engine_built: true,
    };
    for var in ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE"] {
        let err = plain.check(env(&[(var, "4")])).unwrap_err().to_string();
        assert!(
            err.contains("without --distributed") && err.contains(var),
            "{err}"
        );
    }
    // One process started by mpirun, or none: fine.
    plain.check(env(&[("OMPI_COMM_WORLD_SIZE", "1")])).unwrap();
    plain.check(&none).unwrap();
    LaunchCheck {
        distributed: true,
        engine_built: true,
    }
    .check(env(&[("OMPI_COMM_WORLD_SIZE", "2")]))
    .unwrap();
}

#[test]
fn one_process_agrees_with_itself() {
    assert_eq!(agree(&SingleProcess, "x", Ok(3)).unwrap(), 3);
    let failed: trainer::Result<()> = Err(trainer::Error::config("boom"));
    assert!(agree(&SingleProcess, "x", failed)
        .unwrap_err()
        .to_string()
        .contains("boom"));
}

/// Evaluation splits every index exactly once over the ranks (no padding), and the loader of
/// each part reads those images.
#[test]
fn evaluation_parts_hold_every_index_once_without_padding() {
    for len in [1usize, 2, 7, 10, 17, 64] {
        for world in 1..=5 {
            let order: Vec<usize> = (0..len).rev().collect();
            let parts: Vec<Vec<usize>> = (0..world)
                .map(|r| split_indices_exact(&order, r, world))
                .collect();
            let mut all: Vec<usize> = parts.concat();
            all.sort_unstable();
            assert_eq!(all, (0..len).collect::<Vec<_>>(), "len {len} world {world}");
            let lens: Vec<usize> = parts.iter().map(Vec::len).collect();
            assert!(
                lens.iter().max().unwrap() - lens.iter().min().unwrap() <= 1,
                "{lens:?}"
            );
        }
    }
    let (n, world) = (17, 2);
    let mut seen = 0;
    for rank in 0..world {
        let part = loader(n, 4, 1).with_eval_shard(rank, world).unwrap();
        let images: usize = part
            .epoch(0, &candle_core::Device::Cpu)
            .map(|b| b.unwrap().labels.dim(0).unwrap())
            .sum();
        assert_eq!(images, [9, 8][rank]);
        assert_eq!(part.num_batches(), [3, 2][rank]);
        seen += images;
    }
    assert_eq!(seen, n);
}
