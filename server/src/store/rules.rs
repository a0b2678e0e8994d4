//! Rule persistence: the `RuleStore` contract and its SQL (shared by both backends).

use async_trait::async_trait;

#[allow(unused_imports)]
use super::{StoreError, StoreResult};

#[async_trait]
pub trait RuleStore: Send + Sync {}

macro_rules! rules_sql {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::rules::RuleStore for $store {}
    };
}

pub(crate) use rules_sql;
