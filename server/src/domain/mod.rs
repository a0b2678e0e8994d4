//! The domain layer: AS 1851 rules as the server applies them, with no I/O. REST handlers, the
//! sync hub and the projection call these functions; none of them decides these things itself.
//!
//! - [`access`]: who may see and change a session (one answer for REST and sync).
//! - [`applicability`]: which rules apply to an asset (routine alternatives included).
//! - [`editions`]: which editions a building is serviced under and which rules they hold.
//! - [`readings`]: typed readings, their expectations and verdicts.
//! - [`assess`]: an item's classification, contradictions, suggested outcome and findings.
//! - [`defects`]: severity, notification deadlines, defect identity and titles.
//! - [`schedule`], [`holidays`]: when routines are due, tolerance windows, working days.
//! - [`notices`]: which defect changes need the owner told, webhook bodies and signatures,
//!   retries and escalation.
//! - [`period`]: what was due in a period and whether each date was kept (records).
//! - [`service_history`]: services recorded outside sessions (import cells, checks).
//! - [`retention`]: when an archived building's records may be purged.

pub mod access;
pub mod applicability;
pub mod assess;
pub mod defects;
pub mod editions;
pub mod holidays;
pub mod notices;
pub mod period;
pub mod readings;
pub mod reference;
pub mod retention;
pub mod schedule;
pub mod service_history;

#[cfg(test)]
mod defects_model;
