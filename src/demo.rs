//! `cutover demo`: sample batch and streaming services, a demo config in a
//! temp dir, and the proxy serving it. (Being written.)

/// Runs the demo until `shutdown` completes.
pub async fn run(shutdown: impl std::future::Future<Output = ()>) -> Result<(), crate::StartError> {
    shutdown.await;
    Ok(())
}
