//! Idempotency persistence: the `IdempotencyStore` contract and its SQL (shared by both backends).

use async_trait::async_trait;

#[allow(unused_imports)]
use super::{StoreError, StoreResult};

#[async_trait]
pub trait IdempotencyStore: Send + Sync {}

macro_rules! idempotency_sql {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::idempotency::IdempotencyStore for $store {}
    };
}

pub(crate) use idempotency_sql;
