//! The workspace builds with the patched candle-core (`third_party/candle-core/PATCH.md`), and
//! `patched_autograd` tells it apart from the published one by behaviour.

#[test]
fn the_workspace_runs_the_patched_autograd() {
    assert!(backbone::patched_autograd());
    // Asked twice, one answer.
    assert!(backbone::patched_autograd());
}
