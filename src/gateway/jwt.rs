//! A JWT caller on the LLM surfaces: which of the teams it may act in a call runs in. The
//! checks are the keys' own (`tenancy::access`), run on the token's entries.

use super::GatewayError;
use crate::auth::{AuthError, JwtGrant};
use crate::tenancy::Directory;
use crate::tenancy::access::{self, Chain, RouteClass};
use http::HeaderMap;

fn refused(e: crate::auth::JwtError) -> GatewayError {
    GatewayError::Auth(AuthError::Jwt(e))
}

/// The chain a call runs under: of the teams the token may act in (see
/// [`JwtGrant::candidates`]), the first whose every level allows the route and the model — as
/// LiteLLM picks the first of a token's teams with access to the model. When none does, the
/// first one's refusal answers.
pub(super) fn chain(
    dir: &Directory,
    grant: &JwtGrant,
    headers: &HeaderMap,
    end_user: Option<&str>,
    path: &str,
    model: &str,
) -> Result<Chain, GatewayError> {
    let role = grant.acting_role(dir);
    let team = crate::api::jwt::team_header(headers);
    let mut refusal = None;
    for key in grant.candidates(dir, team).map_err(refused)? {
        let tried = access::check_route(dir, key, role, RouteClass::Llm, path)
            .and_then(|()| access::asserted_chain(dir, key, end_user, role))
            .and_then(|c| access::check_model(dir, &c, model).map(|()| c));
        match tried {
            Ok(chain) => return Ok(chain),
            Err(d) => {
                refusal.get_or_insert(d);
            }
        }
    }
    Err(refusal.map_or(GatewayError::Auth(AuthError::Invalid), GatewayError::Denied))
}

/// Whether the token may call LLM routes at all (model listings): some entry passes.
pub(super) fn may_call(
    dir: &Directory,
    grant: &JwtGrant,
    headers: &HeaderMap,
    path: &str,
) -> Result<(), GatewayError> {
    let role = grant.acting_role(dir);
    let team = crate::api::jwt::team_header(headers);
    let mut refusal = None;
    for key in grant.candidates(dir, team).map_err(refused)? {
        match access::check_route(dir, key, role, RouteClass::Llm, path) {
            Ok(()) => return Ok(()),
            Err(d) => {
                refusal.get_or_insert(d);
            }
        }
    }
    Err(refusal.map_or(GatewayError::Auth(AuthError::Invalid), GatewayError::Denied))
}

/// Whether some team the token may act in allows `model`: what `/v1/models` lists.
pub(super) fn may_use(dir: &Directory, grant: &JwtGrant, headers: &HeaderMap, model: &str) -> bool {
    let role = grant.acting_role(dir);
    let team = crate::api::jwt::team_header(headers);
    grant.candidates(dir, team).is_ok_and(|keys| {
        keys.into_iter().any(|k| {
            access::asserted_chain(dir, k, None, role)
                .is_ok_and(|c| access::check_model(dir, &c, model).is_ok())
        })
    })
}
