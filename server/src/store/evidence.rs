//! Evidence persistence: the `EvidenceStore` contract and its SQL (shared by both backends).

use async_trait::async_trait;

#[allow(unused_imports)]
use super::{StoreError, StoreResult};

#[async_trait]
pub trait EvidenceStore: Send + Sync {}

macro_rules! evidence_sql {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::evidence::EvidenceStore for $store {}
    };
}

pub(crate) use evidence_sql;
