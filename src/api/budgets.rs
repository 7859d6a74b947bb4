//! Routes of the privacy budgets: what each dataset of this node may still
//! spend on noisy secure sums, and the owner's setting of one.

use std::collections::BTreeSet;

use axum::{extract::State, Json};

use super::{ApiError, ApiJson, ApiState};
use crate::{
    api_types::{BudgetView, ErrorBody, PolicyView, SetBudget},
    policy::{DatasetBudget, PolicyError},
};

/// The budget of every dataset of this node, of `private/` (tasks that
/// read the whole private area), and of any that spent some: what it is,
/// what was spent, what is left.
#[utoipa::path(get, path = "/v1/policy/budgets", tag = "owner",
    responses((status = 200, body = Vec<BudgetView>),
              (status = "4XX", body = ErrorBody, description = "refused: the error says why")))]
pub(super) async fn list_budgets(State(state): State<ApiState>) -> Json<Vec<BudgetView>> {
    let policy = state.node.policy.get();
    let spent = state.node.egress.ledger().all().await;
    let mut names: BTreeSet<String> = state
        .node
        .datasets
        .cards()
        .into_iter()
        .map(|card| card.name)
        .collect();
    names.insert("private/".into());
    names.extend(spent.keys().cloned());
    names.extend(policy.budgets.iter().map(|b| b.dataset.clone()));
    let views = names
        .into_iter()
        .map(|dataset| {
            let budget = state.node.egress.budget_for(&dataset);
            let rho = spent.get(&dataset).copied().unwrap_or(0.0);
            BudgetView {
                spent_epsilon: budget.epsilon_spent(rho),
                left_epsilon: budget.epsilon_spent((budget.rho() - rho).max(0.0)),
                epsilon: budget.epsilon,
                delta: budget.delta,
                dataset,
            }
        })
        .collect();
    Json(views)
}

/// Sets the privacy budget of one dataset (or of `private/`). Lowering it
/// below what was spent ends its sums; the spends stay.
#[utoipa::path(post, path = "/v1/policy/budgets", tag = "owner", request_body = SetBudget,
    responses((status = 200, body = PolicyView),
              (status = "4XX", body = ErrorBody, description = "refused: the error says why")))]
pub(super) async fn set_budget(
    State(state): State<ApiState>,
    ApiJson(body): ApiJson<SetBudget>,
) -> Result<Json<PolicyView>, ApiError> {
    if body.dataset != "private/" {
        iris_behaviours::validate_name("dataset name", &body.dataset)
            .map_err(PolicyError::Invalid)?;
        if !state
            .node
            .datasets
            .cards()
            .iter()
            .any(|card| card.name == body.dataset)
        {
            return Err(PolicyError::NotFound(format!(
                "this node has no dataset '{}' (iris datasets add declares one; private/ is \
                 the whole private area)",
                body.dataset
            ))
            .into());
        }
    }
    let budget = DatasetBudget {
        dataset: body.dataset,
        epsilon: body.epsilon,
        delta: body
            .delta
            .unwrap_or_else(|| state.node.policy.get().privacy_delta),
    };
    let change = format!(
        "privacy budget of {}: epsilon {} at delta {:e}",
        budget.dataset, budget.epsilon, budget.delta
    );
    let policy = state
        .node
        .policy
        .change(change, |p| {
            p.budgets.retain(|b| b.dataset != budget.dataset);
            p.budgets.push(budget);
            Ok(())
        })
        .await?;
    Ok(Json(policy))
}
