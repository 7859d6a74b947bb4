//! What the dataset routes take and give (`/v1/datasets`).

use iris_behaviours::{libp2p::PeerId, Liveness};
use serde::{Deserialize, Serialize};

/// A tag: letters, digits and `-_.:=`, 1 to 64 of them (`site=paris`).
#[derive(utoipa::ToSchema)]
#[schema(pattern = r"^[A-Za-z0-9_.:=-]{1,64}$")]
#[allow(dead_code)] // a schema only: tags travel as strings
pub struct TagText(String);

/// `POST /v1/datasets`: the owner declares a dataset.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddDataset {
    #[schema(pattern = r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$")]
    pub name: String,
    /// A directory of CSV files under `private/`, such as `private/heart`.
    #[schema(value_type = super::shapes::DatasetDir)]
    pub path: String,
    #[serde(default)]
    #[schema(value_type = Vec<TagText>, max_items = 8)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub licence: String,
    #[serde(default)]
    pub contact: String,
    /// The row count is rounded to a multiple of this (default 100).
    #[serde(
        default = "default_rows_bucket",
        deserialize_with = "super::shapes::whole"
    )]
    #[schema(maximum = 9007199254740992_u64)]
    pub rows_bucket: u64,
    /// Synthetic rows of the same schema to share as a mock sample, in
    /// `public/datasets/<name>/mock.csv` (default 20; 0 for none).
    #[serde(
        default = "default_mock_rows",
        deserialize_with = "super::shapes::whole"
    )]
    #[schema(maximum = 100000)]
    pub mock_rows: usize,
    /// Find the schema again over an existing `dataset.toml`.
    #[serde(default)]
    pub replace: bool,
}

fn default_rows_bucket() -> u64 {
    100
}
fn default_mock_rows() -> usize {
    20
}

/// `GET /v1/datasets?tag=T`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DatasetsQuery {
    /// Only datasets with this tag.
    pub tag: Option<String>,
}

/// A dataset of the network and a node that holds it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DatasetHolder {
    pub node: String,
    #[schema(value_type = String)]
    pub peer_id: PeerId,
    /// The holder's state in this node's map.
    pub state: Liveness,
    pub card: iris_behaviours::DatasetCard,
}
