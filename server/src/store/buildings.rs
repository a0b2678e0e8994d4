//! Building persistence: the `BuildingStore` contract and its SQL (shared by both backends).

use async_trait::async_trait;

#[allow(unused_imports)]
use super::{StoreError, StoreResult};

#[async_trait]
pub trait BuildingStore: Send + Sync {}

macro_rules! buildings_sql {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::buildings::BuildingStore for $store {}
    };
}

pub(crate) use buildings_sql;
