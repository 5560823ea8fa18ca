//! The OpenAPI 3.1 document, generated from the handlers and types.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::problem::Problem;
use crate::server::{BulkEnqueued, BulkRequest, Enqueued, JobRequest, JobState};

#[derive(OpenApi)]
#[openapi(
    info(title = "resq enqueue API", description = "Signed, validated, scoped enqueueing into Resque's Redis."),
    paths(
        crate::server::enqueue_one,
        crate::server::enqueue_bulk,
        crate::server::job_state,
        crate::server::openapi,
        crate::server::healthz,
        crate::server::ready
    ),
    components(schemas(JobRequest, BulkRequest, Enqueued, BulkEnqueued, JobState, Problem)),
    modifiers(&Bearer)
)]
struct Document;

struct Bearer;

impl Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The document, as served at `/api/v1/openapi.json`.
pub fn document() -> utoipa::openapi::OpenApi {
    Document::openapi()
}
