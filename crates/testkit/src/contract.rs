//! One way to run a store's contract suite against every backend.
//!
//! A store port (identity's `Store`, the revocation `Log`, the payments store, the
//! nonce and replay stores) has one suite of properties, each an `async fn` taking the
//! backend, and every backend must pass all of them. [`contract_suite!`] writes the
//! tests: a module per backend, a `#[tokio::test]` per property, each with a fresh
//! backend, so that a failure names both (`postgres::one_enrolled_subject_per_document`).

/// `contract_suite!(memory => super::memory_store(), postgres => super::postgres_store().await;
/// [subjects::one_enrolled_subject_per_document, links::concurrent_links_have_one_winner]);`
///
/// Each backend expression is evaluated inside the backend's module (hence `super::`)
/// once per test, so every test gets a fresh backend; each property is
/// `concern::property`, a function of the module `concern` beside the invocation.
#[macro_export]
macro_rules! contract_suite {
    ($($backend:ident => $make:expr),+ $(,)? ; $properties:tt) => {
        $( $crate::contract_suite!(@backend $backend, $make, $properties); )+
    };
    (@backend $backend:ident, $make:expr, [$($concern:ident :: $property:ident),* $(,)?]) => {
        mod $backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $property() {
                    super::$concern::$property($make).await;
                }
            )*
        }
    };
}
