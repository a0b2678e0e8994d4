//! Writing session documents as the server's actor: one automerge change per call, and no
//! change at all when every value written equals what is already there.

use std::collections::{BTreeSet, HashMap};

use automerge::transaction::{CommitOptions, Transactable, Transaction};
use automerge::{
    hydrate, ActorId, Automerge, ChangeHash, ObjId, ObjType, ReadDoc, ScalarValue, TextEncoding,
    Value, ROOT,
};
use uuid::Uuid;

use super::keys::*;
use super::{
    id_string, Outcome, ReadingValue, ResultInput, SessionError, SessionInit, SignOff,
    SCHEMA_VERSION, STATUS_COMPLETED, STATUS_IN_PROGRESS,
};
use crate::read::scalar_f64;

/// Creates a new session document in one change made by `actor` at `timestamp_secs`.
///
/// Every item starts `not_tested` with empty readings, notes and evidence; `recordedBy` and
/// `recordedAt` are absent until a result is recorded.
pub fn create_session_document(
    init: &SessionInit,
    actor: ActorId,
    timestamp_secs: i64,
) -> Result<Automerge, SessionError> {
    let mut seen = BTreeSet::new();
    for item in &init.items {
        if !seen.insert(item.asset_id) {
            return Err(SessionError::DuplicateItem(item.asset_id));
        }
    }

    let mut doc = Automerge::new().with_actor(actor);
    commit(&mut doc, "create session", timestamp_secs, |tx| {
        tx.put(ROOT, SCHEMA, SCHEMA_VERSION)?;
        tx.put(ROOT, SESSION_ID, id_string(&init.session_id))?;
        tx.put(ROOT, BUILDING_ID, id_string(&init.building_id))?;
        tx.put(ROOT, ORG_ID, id_string(&init.org_id))?;
        let rule_set = tx.put_object(ROOT, RULE_SET, ObjType::Map)?;
        tx.put(&rule_set, CODE, init.rule_set_code.as_str())?;
        tx.put(&rule_set, VERSION, init.rule_set_version.as_str())?;
        tx.put(ROOT, FREQUENCY, init.frequency.as_str())?;
        tx.put(ROOT, NAME, init.name.as_str())?;
        tx.put(ROOT, STATUS, STATUS_IN_PROGRESS)?;
        // Every item in one batch: automerge splices its op set twice for the whole tree
        // instead of once per operation (~330 for 40 items, most of a session's creation).
        let encoding = tx.text_encoding();
        let items: HashMap<String, hydrate::Value> = init
            .items
            .iter()
            .map(|item| {
                let id = id_string(&item.asset_id);
                let value = item_value(&id, &item.rule_code, encoding);
                (id, value)
            })
            .collect();
        tx.batch_create_object(ROOT, ITEMS, &hydrate::Value::Map(items.into()), false)?;
        tx.put_object(ROOT, NOTES, ObjType::Text)?;
        Ok(())
    })?;
    Ok(doc)
}

/// Records test results in one change made by `actor` at `timestamp_secs`.
///
/// Only fields whose value differs are written, so applying the same results twice makes no
/// second change; the answer is `None` when nothing changed. An asset not yet in the session
/// is added (its `rule_code` is then required). A container of the wrong type (say, `readings`
/// written as a string by a broken client) is replaced; the old value stays in history.
///
/// The document's actor becomes `actor`. Two writers must never share an actor id (two
/// server nodes writing as one actor would produce clashing sequence numbers).
pub fn apply_results(
    doc: &mut Automerge,
    results: &[ResultInput],
    actor: ActorId,
    timestamp_secs: i64,
) -> Result<Option<ChangeHash>, SessionError> {
    for result in results {
        if let Some((name, _)) = result
            .readings
            .iter()
            .find(|(_, v)| matches!(v, ReadingValue::Number(x) if !x.is_finite()))
        {
            return Err(SessionError::InvalidReading {
                asset_id: result.asset_id,
                name: name.clone(),
            });
        }
    }
    doc.set_actor(actor);
    commit(doc, "record results", timestamp_secs, |tx| {
        let items = ensure_object(tx, &ROOT, ITEMS, ObjType::Map)?;
        for result in results {
            apply_result(tx, &items, result)?;
        }
        Ok(())
    })
}

/// Sets the session's `status` (`in_progress` or `completed`); `None` when it already was.
pub fn set_status(
    doc: &mut Automerge,
    status: &str,
    actor: ActorId,
    timestamp_secs: i64,
) -> Result<Option<ChangeHash>, SessionError> {
    if status != STATUS_IN_PROGRESS && status != STATUS_COMPLETED {
        return Err(SessionError::InvalidStatus(
            status.chars().take(64).collect(),
        ));
    }
    doc.set_actor(actor);
    commit(doc, "set status", timestamp_secs, |tx| {
        set_string(tx, &ROOT, STATUS, status)
    })
}

/// Completes the session with its sign-off (`status: completed` and `signedOff` in one change),
/// or with `None` reopens it (`status: in_progress`, `signedOff` removed).
pub fn set_sign_off(
    doc: &mut Automerge,
    sign_off: Option<&SignOff>,
    actor: ActorId,
    timestamp_secs: i64,
) -> Result<Option<ChangeHash>, SessionError> {
    doc.set_actor(actor);
    let message = if sign_off.is_some() {
        "sign off session"
    } else {
        "reopen session"
    };
    commit(doc, message, timestamp_secs, |tx| match sign_off {
        Some(s) => {
            set_string(tx, &ROOT, STATUS, STATUS_COMPLETED)?;
            let map = ensure_object(tx, &ROOT, SIGNED_OFF, ObjType::Map)?;
            set_string(tx, &map, USER_ID, &s.user_id)?;
            set_string(tx, &map, LICENCE, &s.licence)?;
            set_string(tx, &map, AT, &s.at)?;
            Ok(())
        }
        None => {
            set_string(tx, &ROOT, STATUS, STATUS_IN_PROGRESS)?;
            if tx.get(&ROOT, SIGNED_OFF)?.is_some() {
                tx.delete(&ROOT, SIGNED_OFF)?;
            }
            Ok(())
        }
    })
}

/// Sets the session's `name`; `None` when it already was.
pub fn set_name(
    doc: &mut Automerge,
    name: &str,
    actor: ActorId,
    timestamp_secs: i64,
) -> Result<Option<ChangeHash>, SessionError> {
    doc.set_actor(actor);
    commit(doc, "rename session", timestamp_secs, |tx| {
        set_string(tx, &ROOT, NAME, name)
    })
}

/// Runs `f` in one transaction: committed with `message` and `time` when it succeeds (`None`
/// if it made no operation), rolled back entirely when it fails.
fn commit<F>(
    doc: &mut Automerge,
    message: &str,
    time: i64,
    f: F,
) -> Result<Option<ChangeHash>, SessionError>
where
    F: FnOnce(&mut Transaction<'_>) -> Result<(), SessionError>,
{
    doc.transact_with(
        |_| {
            CommitOptions::default()
                .with_message(message)
                .with_time(time)
        },
        f,
    )
    .map(|success| success.hash)
    .map_err(|failure| failure.error)
}

/// A new item as it starts: `not_tested`, no observed conditions, readings, notes or evidence.
fn item_value(asset_id: &str, rule_code: &str, encoding: TextEncoding) -> hydrate::Value {
    let fields: HashMap<&str, hydrate::Value> = HashMap::from([
        (ASSET_ID, asset_id.into()),
        (RULE_CODE, rule_code.into()),
        (OUTCOME, Outcome::NotTested.as_str().into()),
        (OBSERVED_CONDITIONS, Vec::<hydrate::Value>::new().into()),
        (
            READINGS,
            hydrate::Value::Map(HashMap::<&str, hydrate::Value>::new().into()),
        ),
        (
            NOTES,
            hydrate::Value::Text(hydrate::Text::new(encoding, "")),
        ),
        (EVIDENCE, Vec::<hydrate::Value>::new().into()),
    ]);
    hydrate::Value::Map(fields.into())
}

fn new_item(
    tx: &mut Transaction<'_>,
    items: &ObjId,
    asset_id: &Uuid,
    rule_code: &str,
) -> Result<ObjId, SessionError> {
    let id = id_string(asset_id);
    let value = item_value(&id, rule_code, tx.text_encoding());
    Ok(tx.batch_create_object(items, id.as_str(), &value, false)?)
}

fn apply_result(
    tx: &mut Transaction<'_>,
    items: &ObjId,
    result: &ResultInput,
) -> Result<(), SessionError> {
    let key = id_string(&result.asset_id);
    let item = match tx.get(items, key.as_str())? {
        Some((Value::Object(ObjType::Map), item)) => item,
        _ => {
            let rule_code = result
                .rule_code
                .as_deref()
                .ok_or(SessionError::MissingRuleCode(result.asset_id))?;
            new_item(tx, items, &result.asset_id, rule_code)?
        }
    };

    set_string(tx, &item, ASSET_ID, &key)?;
    if let Some(rule_code) = &result.rule_code {
        set_string(tx, &item, RULE_CODE, rule_code)?;
    }
    set_string(tx, &item, OUTCOME, result.outcome.as_str())?;
    if let Some(conditions) = &result.observed_conditions {
        set_conditions(tx, &item, conditions)?;
    }
    if !result.readings.is_empty() {
        let readings = ensure_object(tx, &item, READINGS, ObjType::Map)?;
        for (name, value) in &result.readings {
            match value {
                ReadingValue::Number(x) => set_number(tx, &readings, name, *x)?,
                ReadingValue::Text(t) => set_string(tx, &readings, name, t)?,
                ReadingValue::Bool(b) => {
                    let same = matches!(tx.get_all(&readings, name.as_str())?.as_slice(),
                        [(Value::Scalar(s), _)] if s.as_bool() == Some(*b));
                    if !same {
                        tx.put(&readings, name.as_str(), *b)?;
                    }
                }
            }
        }
    }
    if let Some(notes) = &result.notes {
        set_text(tx, &item, NOTES, notes)?;
    }
    if !result.evidence.is_empty() {
        add_evidence(tx, &item, &result.evidence)?;
    }
    set_string(tx, &item, RECORDED_BY, &id_string(&result.recorded_by))?;
    set_string(tx, &item, RECORDED_AT, &result.recorded_at)?;
    Ok(())
}

/// The object of type `typ` at `key`, created (replacing whatever was there) if needed.
fn ensure_object(
    tx: &mut Transaction<'_>,
    parent: &ObjId,
    key: &str,
    typ: ObjType,
) -> Result<ObjId, SessionError> {
    match tx.get(parent, key)? {
        Some((Value::Object(found), id)) if found == typ => Ok(id),
        _ => Ok(tx.put_object(parent, key, typ)?),
    }
}

/// Writes a string unless the one value there already reads as `value`. A field that is a
/// text object (what JS clients create for strings) is edited in place to stay one; a
/// conflict is resolved by writing, as automerge's own `put` does.
fn set_string(
    tx: &mut Transaction<'_>,
    obj: &ObjId,
    key: &str,
    value: &str,
) -> Result<(), SessionError> {
    enum Current {
        Equal,
        Text(ObjId),
        Other,
    }
    let current = match tx.get_all(obj, key)?.as_slice() {
        [(Value::Scalar(s), _)] if s.as_str() == Some(value) => Current::Equal,
        [(Value::Object(ObjType::Text), id)] => Current::Text(id.clone()),
        _ => Current::Other,
    };
    match current {
        Current::Equal => {}
        Current::Text(id) => {
            if tx.text(&id)? != value {
                tx.update_text(&id, value)?;
            }
        }
        Current::Other => tx.put(obj, key, value)?,
    }
    Ok(())
}

/// Writes a number unless the one value there is already numerically equal (an integer 5
/// written by JS equals 5.0).
fn set_number(
    tx: &mut Transaction<'_>,
    obj: &ObjId,
    key: &str,
    value: f64,
) -> Result<(), SessionError> {
    let current = tx.get_all(obj, key)?;
    if let [(Value::Scalar(s), _)] = current.as_slice() {
        if scalar_f64(s) == Some(value) {
            return Ok(());
        }
    }
    tx.put(obj, key, ScalarValue::F64(value))?;
    Ok(())
}

/// Makes the text object at `key` read `value`, creating it if the field is not a text yet.
fn set_text(
    tx: &mut Transaction<'_>,
    obj: &ObjId,
    key: &str,
    value: &str,
) -> Result<(), SessionError> {
    match tx.get(obj, key)? {
        Some((Value::Object(ObjType::Text), id)) => {
            if tx.text(&id)? != value {
                tx.update_text(&id, value)?;
            }
        }
        _ => {
            let id = tx.put_object(obj, key, ObjType::Text)?;
            if !value.is_empty() {
                tx.splice_text(&id, 0, 0, value)?;
            }
        }
    }
    Ok(())
}

/// Makes the item's `observedConditions` list hold exactly `conditions` (in that order when it
/// is rewritten): elements not wanted are deleted, missing ones appended, so a tablet's
/// concurrent additions to the same list survive. A schema 1 `observedCondition` is removed.
fn set_conditions(
    tx: &mut Transaction<'_>,
    item: &ObjId,
    conditions: &[String],
) -> Result<(), SessionError> {
    let list = ensure_object(tx, item, OBSERVED_CONDITIONS, ObjType::List)?;
    let mut present: Vec<Option<String>> = Vec::new();
    for index in 0..tx.length(&list) {
        present.push(match tx.get(&list, index)? {
            Some((Value::Scalar(s), _)) => s.as_str().map(str::to_string),
            Some((Value::Object(ObjType::Text), id)) => tx.text(&id).ok(),
            _ => None,
        });
    }
    let mut kept: Vec<&str> = Vec::new();
    for index in (0..present.len()).rev() {
        let keep = present[index].as_deref().filter(|p| {
            conditions.iter().any(|c| c == p)
                && !present[..index].iter().any(|q| q.as_deref() == Some(p))
        });
        match keep {
            Some(p) => kept.push(p),
            None => tx.delete(&list, index)?,
        }
    }
    for c in conditions {
        if !kept.contains(&c.as_str()) {
            let end = tx.length(&list);
            tx.insert(&list, end, c.as_str())?;
            kept.push(c);
        }
    }
    if tx.get(item, OBSERVED_CONDITION)?.is_some() {
        tx.delete(item, OBSERVED_CONDITION)?;
    }
    Ok(())
}

/// Appends the evidence ids the list does not hold yet (compared case-insensitively, as UUIDs).
fn add_evidence(
    tx: &mut Transaction<'_>,
    item: &ObjId,
    evidence: &[Uuid],
) -> Result<(), SessionError> {
    let list = ensure_object(tx, item, EVIDENCE, ObjType::List)?;
    let mut present = BTreeSet::new();
    for index in 0..tx.length(&list) {
        let text = match tx.get(&list, index)? {
            Some((Value::Scalar(s), _)) => s.as_str().map(str::to_string),
            Some((Value::Object(ObjType::Text), id)) => tx.text(&id).ok(),
            _ => None,
        };
        if let Some(text) = text {
            present.insert(text.to_ascii_lowercase());
        }
    }
    for id in evidence {
        let id = id_string(id);
        if present.insert(id.clone()) {
            let end = tx.length(&list);
            tx.insert(&list, end, id.as_str())?;
        }
    }
    Ok(())
}
