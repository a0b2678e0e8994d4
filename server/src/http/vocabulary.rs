//! The closed vocabularies and request examples of the OpenAPI document, in one place.
//!
//! Many fields carry a code from a closed set: an outcome, a defect status, a severity, an
//! equipment kind or frequency of the rule library. Some of those sets are data (the library's
//! kinds and frequencies are read from its files), so they cannot be Rust enums; the others are
//! kept as strings in rows shared with the store. Rather than annotate every struct, the
//! finished document gets an `enum` on each such property here, from the same constants the
//! server validates against — so a generated client knows every allowed value and the schema
//! cannot drift from the code. Every JSON request body also gets a realistic example (a test
//! sends each one to a real server and checks the server's own deserialiser accepts it).

use serde_json::{json, Map, Value};

use crate::domain::defects::{LIFECYCLE, STATUSES};
use crate::domain::reference::{Source, KINDS};
use crate::rules::{library, Classification};
use firemode_sync_core::Outcome;

/// Which values a property takes.
enum Vocab {
    Equipment,
    Frequency,
    Fixed(&'static [&'static str]),
    Owned(fn() -> Vec<String>),
}

impl Vocab {
    fn values(&self) -> Vec<String> {
        match self {
            Vocab::Equipment => library()
                .equipment_codes()
                .into_iter()
                .map(str::to_owned)
                .collect(),
            Vocab::Frequency => library()
                .frequency_codes()
                .into_iter()
                .map(str::to_owned)
                .collect(),
            Vocab::Fixed(v) => v.iter().map(|s| (*s).to_owned()).collect(),
            Vocab::Owned(f) => f(),
        }
    }
}

fn outcomes() -> Vec<String> {
    Outcome::ALL.iter().map(|o| o.as_str().to_owned()).collect()
}

fn defect_statuses() -> Vec<String> {
    STATUSES.iter().map(|s| (*s).to_owned()).collect()
}

/// What `PATCH /v1/defects/{id}` may ask for: a lifecycle step, cancel, duplicate, reopen.
fn defect_requests() -> Vec<String> {
    let mut v: Vec<String> = LIFECYCLE.iter().map(|s| (*s).to_owned()).collect();
    v.extend(["cancelled".to_owned(), "duplicate".to_owned()]);
    v
}

fn classifications() -> Vec<String> {
    [
        Classification::CriticalDefect,
        Classification::NonCriticalDefect,
        Classification::NonConformance,
        Classification::Compliant,
    ]
    .iter()
    .map(|c| c.as_str().to_owned())
    .collect()
}

fn reference_kinds() -> Vec<String> {
    KINDS.iter().map(|k| k.as_str().to_owned()).collect()
}

fn reference_sources() -> Vec<String> {
    Source::ALL.iter().map(|s| s.as_str().to_owned()).collect()
}

const SEVERITIES: &[&str] = &["critical", "non_critical", "non_conformance"];
const PASS_FAIL: &[&str] = &["pass", "fail"];
const SESSION_STATUSES: &[&str] = &["in_progress", "completed"];

/// (schemas, property, vocabulary). A schema or property that no longer exists is an error
/// the contract test reports (`unmatched`), so the table cannot rot silently.
const TABLE: &[(&[&str], &str, Vocab)] = &[
    (
        &[
            "AssetView",
            "CreateAsset",
            "UpdateAsset",
            "DefectAsset",
            "DueItem",
            "ReportRow",
            "ItemConflictsView",
        ],
        "asset_type",
        Vocab::Equipment,
    ),
    (&["RuleDef", "RuleView"], "equipment", Vocab::Equipment),
    (&["SystemReport"], "kind", Vocab::Equipment),
    (
        &[
            "CreateSession",
            "SessionView",
            "DueItem",
            "DueException",
            "ReportRow",
            "RuleDef",
            "RuleView",
            "LogbookEntry",
        ],
        "frequency",
        Vocab::Frequency,
    ),
    (
        &["ResultIn", "ResultView"],
        "outcome",
        Vocab::Owned(outcomes),
    ),
    (
        &["LogbookEntry"],
        "outcome",
        Vocab::Fixed(&["pass", "fail", "not_accessible"]),
    ),
    (
        &["ReportRow", "PlannedService"],
        "outcome",
        Vocab::Fixed(PASS_FAIL),
    ),
    (
        &["AttemptView"],
        "outcome",
        Vocab::Fixed(&["delivered", "failed"]),
    ),
    (
        &["ResultView", "ReportRow", "LogbookEntry"],
        "classification",
        Vocab::Owned(classifications),
    ),
    (
        &["LogbookDefect", "OutstandingDefect", "ReportDefect"],
        "severity",
        Vocab::Fixed(SEVERITIES),
    ),
    (
        &[
            "DefectView",
            "LogbookDefect",
            "OutstandingDefect",
            "ReportDefect",
        ],
        "status",
        Vocab::Owned(defect_statuses),
    ),
    (&["UpdateDefect"], "status", Vocab::Owned(defect_requests)),
    (
        &["DefectView"],
        "source",
        Vocab::Fixed(&crate::domain::defects::source::ALL),
    ),
    (
        &["SessionView", "UpdateSession"],
        "status",
        Vocab::Fixed(SESSION_STATUSES),
    ),
    (
        &["DeliveryView"],
        "status",
        Vocab::Fixed(&["pending", "delivered", "failed"]),
    ),
    (&["UploadResult"], "status", Vocab::Fixed(&["verified"])),
    (&["Health"], "status", Vocab::Fixed(&["ok"])),
    (&["Ready"], "status", Vocab::Fixed(&["ready"])),
    (
        &["ConflictView"],
        "kind",
        Vocab::Fixed(&["concurrent_edits", "schema_violation"]),
    ),
    (
        &[
            "ReferenceValueInput",
            "ReferenceValueView",
            "ImportChange",
            "ImportUnchanged",
        ],
        "kind",
        Vocab::Owned(reference_kinds),
    ),
    (
        &["ReferenceValueInput", "ReferenceValueView", "ValueSummary"],
        "source",
        Vocab::Owned(reference_sources),
    ),
    (
        &["LogbookEntry"],
        "source",
        Vocab::Fixed(&["session", "import", "office"]),
    ),
];

/// utoipa writes each page schema (`Paginated_SessionView`) with its item schema inlined;
/// point it at the component instead, so that a generated client has one `SessionView` type
/// (and the enums below reach list items too).
pub fn link_pages(doc: &mut Value) {
    let Some(schemas) = doc
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    let names: Vec<String> = schemas.keys().cloned().collect();
    for name in names {
        let Some(item) = name.strip_prefix("Paginated_") else {
            continue;
        };
        if !schemas.contains_key(item) {
            continue;
        }
        let reference = json!({ "$ref": format!("#/components/schemas/{item}") });
        if let Some(items) = schemas
            .get_mut(&name)
            .and_then(|p| p.pointer_mut("/properties/items"))
            .and_then(Value::as_object_mut)
        {
            items.insert("items".into(), reference);
        }
    }
}

/// Properties that hold any JSON value (a value of a session document: a string, number,
/// boolean, null, list or map). utoipa can only type them as one kind; here they get every
/// JSON type.
const ANY: &[(&str, &str)] = &[
    ("ConflictValueView", "value"),
    ("ConflictView", "winner"),
    ("ItemSideView", "recorded_by"),
    ("ItemSideView", "recorded_at"),
    ("DiffChange", "before"),
    ("DiffChange", "after"),
    ("Resolve", "value"),
];

/// Make the properties of [`ANY`] accept any JSON value. Returns those the document lacks.
pub fn allow_any(doc: &mut Value) -> Vec<String> {
    let mut unmatched = Vec::new();
    for (name, property) in ANY {
        let Some(prop) = doc
            .pointer_mut(&format!("/components/schemas/{name}/properties/{property}"))
            .and_then(Value::as_object_mut)
        else {
            unmatched.push(format!("{name}.{property}"));
            continue;
        };
        for key in [
            "oneOf",
            "anyOf",
            "allOf",
            "$ref",
            "additionalProperties",
            "properties",
        ] {
            prop.remove(key);
        }
        // Every JSON type (a schema without `type` would do, but the document must also
        // read back into utoipa's model, which wants one).
        prop.insert(
            "type".into(),
            json!(["string", "number", "boolean", "object", "array", "null"]),
        );
    }
    unmatched
}

/// Add the enums of [`TABLE`] to `doc`'s component schemas. Returns the (schema, property)
/// pairs of the table that the document does not have.
pub fn add_enums(doc: &mut Value) -> Vec<String> {
    let mut unmatched = Vec::new();
    let Some(schemas) = doc
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    else {
        return unmatched;
    };
    for (names, property, vocab) in TABLE {
        let values = vocab.values();
        for name in *names {
            let Some(prop) = schemas
                .get_mut(*name)
                .and_then(|s| s.get_mut("properties"))
                .and_then(|p| p.get_mut(*property))
                .and_then(Value::as_object_mut)
            else {
                unmatched.push(format!("{name}.{property}"));
                continue;
            };
            set_enum(prop, &values);
        }
    }
    unmatched
}

/// `enum` on a string property; a nullable one (`type: [string, null]`) also allows null.
fn set_enum(prop: &mut Map<String, Value>, values: &[String]) {
    let nullable = prop
        .get("type")
        .and_then(Value::as_array)
        .is_some_and(|t| t.iter().any(|t| t == "null"));
    let mut list: Vec<Value> = values.iter().map(|v| json!(v)).collect();
    if nullable {
        list.push(Value::Null);
    }
    prop.insert("enum".into(), Value::Array(list));
}

/// A realistic example body per operation id (JSON bodies only).
pub fn example(operation_id: &str) -> Option<Value> {
    let building = "0193f5b4-5a1e-7c3d-9a52-3c1f0e8b2a10";
    let asset = "0193f5b4-5a1e-7c3d-9a52-3c1f0e8b2a11";
    let user = "0193f5b4-5a1e-7c3d-9a52-3c1f0e8b2a13";
    let evidence = "0193f5b4-5a1e-7c3d-9a52-3c1f0e8b2a15";
    Some(match operation_id {
        "loginAuth" => {
            json!({ "email": "office@acme.example", "password": "Harbour-lights-glow-at-9pm" })
        }
        "refreshAuth" => json!({ "refresh_token": "rt_9xKp2L7qQm4VbN8sYc3TzR6wE1uH5gJd" }),
        "createBuilding" => json!({
            "name": "Harbour House", "address": "1 Quay St, Sydney NSW 2000",
            "building_type": "Class 5 office", "state": "NSW", "schedule_anchor": "2024-03-01",
            "contact": { "name": "Sam Lee", "phone": "+61 2 9000 0000", "email": "facilities@harbourhouse.example" },
            "editions": [{ "code": "AS1851", "version": "2012.1.0" }]
        }),
        "updateBuilding" => {
            json!({ "name": "Harbour House (east wing)", "schedule_anchor": "2024-04-01" })
        }
        "createBuildingAsset" => json!({
            "asset_type": "portable_extinguisher", "location": "Level 2 lobby, beside the lift",
            "identifier": "EXT-003", "install_date": "2021-06-15", "manufacture_date": "2021-01-20"
        }),
        "updateBuildingAsset" => {
            json!({ "location": "Level 2 lobby, north wall", "identifier": "EXT-003A" })
        }
        "putBuildingAssetReferenceValues" => json!({ "values": [{
            "kind": "baseline", "key": "static_pressure", "value": 700.0, "unit": "kPa",
            "source": "commissioning", "note": "Commissioning report 2021-06"
        }] }),
        "serviceBuildingAssetHistory" => json!({
            "rule_code": "AS1851-10-6M-EXT", "serviced_on": "2025-11-03", "outcome": "pass",
            "note": "From the previous contractor's logbook"
        }),
        "signBuildingConditionReports" => {
            json!({ "period_start": "2025-01-01", "period_end": "2025-12-31" })
        }
        "classify" => json!({
            "rule_code": "AS1851-10-6M-EXT", "observed_condition": "pressure_gauge_below_green",
            "building_id": building
        }),
        "createDefect" => json!({
            "building_id": building, "asset_id": asset, "severity": "non_critical",
            "title": "Extinguisher bracket loose", "description": "Bracket moves when the unit is lifted.",
            "evidence": [evidence]
        }),
        "updateDefect" => {
            json!({ "status": "acknowledged", "note": "Owner's representative told by phone" })
        }
        "replaceHoliday" => json!({ "holidays": [{ "date": "2026-10-05", "name": "Labour Day" }] }),
        "createRule" => json!({
            "code": "ACME-10-6M-EXT", "version": "1.0.0",
            "name": "Portable extinguisher six-monthly check (site procedure)",
            "description": "Check the pressure gauge, seal and bracket.",
            "standard": "AS 1851-2012", "section": "10", "clause": "Table 10.4.1",
            "equipment": "portable_extinguisher", "frequency": "six_monthly",
            "readings": [],
            "classification_mappings": { "bracket_loose": "non_critical_defect", "serviceable": "compliant" },
            "rationale": { "bracket_loose": "The unit can fall but still works." }
        }),
        "createScheduleSession" => json!({
            "building_id": building, "from": "2026-12-01", "to": "2026-12-31", "assigned_to": [user]
        }),
        "createTestsSession" => json!({
            "building_id": building, "name": "December six-monthly", "frequency": "six_monthly",
            "assigned_to": [user]
        }),
        "updateTestsSession" => json!({ "name": "December six-monthly (levels 1-10)" }),
        "resolveTestsSessionConflicts" => {
            json!({ "path": format!("/items/{asset}/outcome"), "value": "fail" })
        }
        "resolveTestsSessionConflictsItem" => json!({ "asset_id": asset, "side": 0 }),
        "createTestsSessionResult" => json!({ "results": [{
            "asset_id": asset, "outcome": "fail", "observed_conditions": ["pressure_gauge_below_green"],
            "notes": "Gauge reads 600 kPa", "evidence": [evidence]
        }] }),
        "createUser" => json!({
            "email": "jo.inspector@acme.example", "password": "Lantern-quarry-74-breeze",
            "role": "inspector", "full_name": "Jo Inspector"
        }),
        "updateUser" => json!({ "licence_number": "NSW-FPAS-12345", "role": "inspector" }),
        "webhookEndpoints" => json!({
            "url": "https://owners.example/firemode/notices", "description": "Owner's notices inbox",
            "event_types": ["defect.opened", "defect.escalated"]
        }),
        "updateWebhookEndpoint" => json!({ "enabled": false }),
        "rotateWebhookEndpointSecret" => json!({ "grace_secs": 3600 }),
        _ => return None,
    })
}

/// Put [`example`] on every JSON request body that has one.
pub fn add_examples(doc: &mut Value) {
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    for item in paths.values_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for op in item.values_mut() {
            let Some(id) = op.get("operationId").and_then(Value::as_str) else {
                continue;
            };
            let Some(ex) = example(id) else { continue };
            if let Some(body) = op.pointer_mut("/requestBody/content/application~1json") {
                if let Some(body) = body.as_object_mut() {
                    body.insert("example".into(), ex);
                }
            }
        }
    }
}
