//! Routes about the node and the API themselves: `/metrics` for
//! Prometheus, and the OpenAPI document of every route.

use axum::{
    extract::State,
    http::{header, StatusCode},
    response::{IntoResponse, Response},
};
use serde_json::Value;
use utoipa::{
    openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme},
    Modify, OpenApi,
};

use super::ApiState;
use crate::{api_types::JobState, metrics::Held};

/// What Prometheus asks for and gets: OpenMetrics text.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Every metric of this node, in the OpenMetrics text format
/// (docs/metrics.md lists them).
#[utoipa::path(get, path = "/metrics", tag = "meta",
    responses((status = 200, content_type = "application/openmetrics-text", body = String,
               description = "the metrics, as Prometheus scrapes them")))]
pub(super) async fn metrics(State(state): State<ApiState>) -> Response {
    let node = &state.node;
    let jobs = node.jobs.jobs();
    let held = Held {
        nodes: node
            .membership
            .nodes()
            .await
            .unwrap_or_default()
            .iter()
            .map(|n| n.state)
            .collect(),
        jobs: jobs
            .iter()
            .map(|j| JobState::from(j.state).to_string())
            .collect(),
        job_states: JobState::ALL.iter().map(JobState::to_string).collect(),
        tasks: jobs
            .iter()
            .flat_map(|j| j.tasks.values().map(|t| t.state))
            .collect(),
        pending_approvals: node.jobs.approvals().await.len(),
        pending_releases: node.jobs.releases().await.len(),
        audit_entries: node.audit.head().entries,
        engine_available: node.images.executor().availability().is_ok(),
    };
    let text = node.metrics.render(&held);
    ([(header::CONTENT_TYPE, OPENMETRICS)], text).into_response()
}

/// This document: OpenAPI 3.1, generated from the handlers and their types.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "meta",
    responses((status = 200, content_type = "application/json", body = Object,
               description = "the OpenAPI document")))]
pub(super) async fn openapi(State(state): State<ApiState>) -> Response {
    let json = state.openapi.get().cloned().unwrap_or_default();
    ([(header::CONTENT_TYPE, "application/json")], json).into_response()
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Iris node API",
        description = "The local REST API of one Iris node. docs/api.md describes each route."
    ),
    modifiers(&Security),
    // What an event stream's envelope holds (`EventEnvelope`'s data), and
    // the shape of a query parameter no body refers to.
    components(schemas(crate::events::Event, crate::api_types::shapes::ReadableFile)),
    security(("bearer" = []), ("cookie" = []))
)]
pub(super) struct ApiDoc;

/// The two ways in: the node's token, or the dashboard's session cookie.
struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "cookie",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                "iris_session_<the last 8 characters of the node's peer id>",
                "the dashboard's session, from POST /v1/session or a login link",
            ))),
        );
    }
}

/// The document as served: each operation's id made unique by its tag
/// (handlers of different groups share names such as `show`), each
/// answer described (OpenAPI requires it) by its status's reason phrase
/// where the handler gave none, and the rules across fields that utoipa's
/// derive cannot state ([`cross_field_rules`]).
pub(super) fn finish(document: utoipa::openapi::OpenApi) -> String {
    let mut json = serde_json::to_value(&document).expect("the document serializes");
    cross_field_rules(&mut json);
    let paths = json["paths"].as_object_mut().expect("paths");
    for operation in paths
        .values_mut()
        .filter_map(Value::as_object_mut)
        .flat_map(|item| item.values_mut())
    {
        let tag = operation["tags"][0].as_str().unwrap_or("api").to_string();
        if let Some(Value::String(id)) = operation.get_mut("operationId") {
            *id = format!("{tag}_{id}");
        }
        let Some(responses) = operation["responses"].as_object_mut() else {
            continue;
        };
        for (status, response) in responses.iter_mut() {
            if response.get("description").is_none() {
                let reason = status
                    .parse()
                    .ok()
                    .and_then(|code| StatusCode::from_u16(code).ok())
                    .and_then(|code| code.canonical_reason())
                    .unwrap_or("the answer");
                response["description"] = Value::String(reason.to_string());
            }
        }
    }
    serde_json::to_string_pretty(&json).expect("the document serializes")
}

/// What a request must hold across its fields, in JSON Schema's own words
/// (OpenAPI 3.1): a dry run is on a dataset's mock sample, so it names the
/// dataset (`on: "dataset:NAME"`); a body of one of several shapes (a
/// command rule, a policy setting) has no field beyond its shape's, as
/// serde's `deny_unknown_fields` on the whole says; and an event's
/// envelope holds an `Event` as JSON (`contentSchema`, which utoipa's
/// derive has no attribute for).
fn cross_field_rules(json: &mut Value) {
    for shapes in ["CommandRule", "PolicySetting"] {
        let one_of = json["components"]["schemas"][shapes]["oneOf"].as_array_mut();
        for shape in one_of.into_iter().flatten() {
            shape["additionalProperties"] = Value::Bool(false);
        }
    }
    let data = &mut json["components"]["schemas"]["EventEnvelope"]["properties"]["data"];
    data["contentSchema"] = serde_json::json!({"$ref": "#/components/schemas/Event"});
    // A dry run is on a dataset; a warm worker serves a training's rounds.
    let job = &mut json["components"]["schemas"]["JobRequest"];
    job["allOf"] = serde_json::json!([
        {
            "if": {"properties": {"dry_run": {"const": true}}, "required": ["dry_run"]},
            "then": {
                "properties": {"on": {"pattern": "^dataset:[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$"}},
                "required": ["on"]
            }
        },
        {
            "if": {"properties": {"warm": {"const": true}}, "required": ["warm"]},
            "then": {"required": ["round"], "properties": {"round": {"type": "object"}}}
        }
    ]);
}
