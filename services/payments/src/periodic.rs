//! The background passes' clock: a pass run every interval (the first at once, an
//! overrunning one delaying the next) until the server starts draining or the pass says
//! it is done. The outbox worker and the expiry of overdue trips run on it.

use std::future::Future;
use std::ops::ControlFlow;
use std::time::Duration;

use citypass_runtime::Draining;
use tokio::task::JoinHandle;

/// Spawns `pass`, run every `every` until `draining` starts or it returns `Break`.
pub fn spawn_every<F, Fut>(every: Duration, mut draining: Draining, mut pass: F) -> JoinHandle<()>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = ControlFlow<()>> + Send,
{
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = draining.started() => return,
                _ = tick.tick() => {}
            }
            if pass().await.is_break() {
                return;
            }
        }
    })
}
