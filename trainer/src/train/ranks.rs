//! What the loop does differently when it is one rank of a data-parallel run
//! ([`crate::distributed`]): the start every rank takes from rank 0, and the epoch's sums over
//! the ranks. With one process every function here returns what it was given.

use super::config::TrainConfig;
use super::step::{phase_optimizer, EpochSums};
use crate::distributed::{agree, broadcast_varmap, bytes_to_tensors, tensors_to_bytes, Collective};
use crate::metrics::EpochMetrics;
use crate::optim::Optimizer;
use crate::run::RunDir;
use crate::{Error, Result};
use backbone::Backbone;
use candle_nn::VarMap;

/// Rank 0 restores the run (`--resume`); every rank then gets rank 0's weights and buffers
/// (restored or freshly initialised), its epoch, optimizer state and history. Returns the
/// epochs done, the optimizer and the history.
pub(super) fn start(
    collective: &dyn Collective,
    run: &RunDir,
    model: &dyn Backbone,
    varmap: &VarMap,
    config: &TrainConfig,
) -> Result<(usize, Box<dyn Optimizer>, Vec<EpochMetrics>)> {
    let restored = agree(
        collective,
        "restoring the run",
        run.restore(varmap, |epoch| {
            phase_optimizer(model, varmap, config, config.frozen_at(epoch))
        }),
    )?;
    if collective.world_size() == 1 {
        let (done, optimizer) = match restored {
            Some(restored) => restored,
            None => (0, phase_optimizer(model, varmap, config, config.frozen_at(1))?),
        };
        return Ok((done, optimizer, run.history(done)));
    }
    broadcast_varmap(collective, varmap)?;
    // Rank 0's epoch, optimizer state and history (JSON).
    let mut header = match &restored {
        Some((done, optimizer)) => {
            let history = serde_json::to_vec(&run.history(*done))
                .map_err(|e| Error::Distributed(format!("cannot send the history: {e}")))?;
            let state = tensors_to_bytes(&optimizer.state()?)?;
            let mut bytes = (*done as u64).to_le_bytes().to_vec();
            bytes.extend_from_slice(&(history.len() as u64).to_le_bytes());
            bytes.extend_from_slice(&history);
            bytes.extend_from_slice(&state);
            bytes
        }
        None => 0u64.to_le_bytes().to_vec(),
    };
    collective.broadcast_bytes(&mut header)?;
    let word = |at: usize| -> Result<u64> {
        let bytes: [u8; 8] = header
            .get(at..at + 8)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| Error::Distributed("rank 0's start message is truncated".into()))?;
        Ok(u64::from_le_bytes(bytes))
    };
    let done = word(0)? as usize;
    if done == 0 {
        let optimizer = phase_optimizer(model, varmap, config, config.frozen_at(1))?;
        return Ok((0, optimizer, Vec::new()));
    }
    if let Some((_, optimizer)) = restored {
        return Ok((done, optimizer, run.history(done)));
    }
    let history_len = word(8)? as usize;
    let history_bytes = header
        .get(16..16 + history_len)
        .ok_or_else(|| Error::Distributed("rank 0's start message is truncated".into()))?;
    let history: Vec<EpochMetrics> = serde_json::from_slice(history_bytes)
        .map_err(|e| Error::Distributed(format!("cannot read rank 0's history: {e}")))?;
    let state = bytes_to_tensors(&header[16 + history_len..])?;
    let mut optimizer = phase_optimizer(model, varmap, config, config.frozen_at(done))?;
    optimizer.load_state(&state)?;
    Ok((done, optimizer, history))
}

/// Sums the epoch's sums over the ranks (loss, auxiliary loss, correct, seen, the classes seen),
/// keeping this rank's training time.
pub(super) fn reduce_sums(collective: &dyn Collective, sums: &mut EpochSums, classes: usize) -> Result<()> {
    if collective.world_size() == 1 {
        return Ok(());
    }
    let mut values = vec![
        sums.loss,
        sums.aux.unwrap_or(0.0),
        if sums.aux.is_some() { 1.0 } else { 0.0 },
        sums.correct as f64,
        sums.seen as f64,
    ];
    let mut seen_classes = vec![0.0; classes];
    for &c in &sums.classes {
        if let Some(slot) = seen_classes.get_mut(c as usize) {
            *slot = 1.0;
        }
    }
    values.extend(seen_classes);
    collective.all_reduce_sum_f64(&mut values)?;
    sums.loss = values[0];
    sums.aux = (values[2] > 0.0).then_some(values[1]);
    sums.correct = values[3].round() as usize;
    sums.seen = values[4].round() as usize;
    sums.classes = values[5..]
        .iter()
        .enumerate()
        .filter(|(_, &v)| v > 0.0)
        .map(|(c, _)| c as u32)
        .collect();
    Ok(())
}
