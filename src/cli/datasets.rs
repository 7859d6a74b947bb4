//! `iris datasets`: the network's datasets, and the owner's declarations.
//! The list is the search the Grid seed had, without a gateway: every
//! member knows every card from the map.

use clap::{Args, Subcommand};
use iris_behaviours::DatasetCard;

use super::{
    output::{header, print_json, print_table},
    NodeDir, Output,
};
use crate::api_types::{AddDataset, DatasetsQuery};

#[derive(Debug, Subcommand)]
pub enum DatasetsCommand {
    /// Declare a dataset of this node: a directory of CSV files under
    /// private/. Its schema and row count are found from the data and
    /// written to PATH/dataset.toml, which only the card leaves.
    Add(AddArgs),
    /// Read every card of this node again, after editing a dataset.toml.
    Reload {
        #[command(flatten)]
        dir: NodeDir,
    },
    /// Take a dataset off the network; its data and card stay.
    Rm {
        #[command(flatten)]
        dir: NodeDir,
        name: String,
    },
}

#[derive(Debug, Args)]
pub struct AddArgs {
    #[command(flatten)]
    dir: NodeDir,
    /// The dataset's name, as jobs target it (`--on dataset:NAME`).
    name: String,
    /// Its directory, relative to the workspace: private/heart.
    path: String,
    /// A tag to search by (repeat for more).
    #[arg(long = "tag")]
    tags: Vec<String>,
    #[arg(long, default_value = "")]
    description: String,
    #[arg(long, default_value = "")]
    licence: String,
    #[arg(long, default_value = "")]
    contact: String,
    /// The row count is shown rounded to a multiple of this.
    #[arg(long, default_value_t = 100)]
    rows_bucket: u64,
    /// Synthetic rows of the same schema shared as a mock sample (0: none).
    #[arg(long, default_value_t = 20)]
    mock_rows: usize,
    /// Find the schema again, over an existing dataset.toml.
    #[arg(long)]
    replace: bool,
}

pub async fn datasets(
    command: Option<DatasetsCommand>,
    tag: Option<String>,
    dir: &NodeDir,
    output: &Output,
) -> anyhow::Result<()> {
    match command {
        None => {
            let client = dir.client()?;
            let holders = client.datasets(&DatasetsQuery { tag }).await?;
            if output.json {
                return print_json(&holders);
            }
            // This node's own datasets show what their privacy budgets
            // have left (its owner's to know; other nodes' are theirs).
            let me = client.status().await?.peer_id;
            let budgets = client.budgets().await.unwrap_or_default();
            let left = |h: &crate::api_types::DatasetHolder| -> String {
                budgets
                    .iter()
                    .find(|b| h.peer_id == me && b.dataset == h.card.name)
                    .map_or("-".into(), |b| {
                        format!("{:.3} of {}", b.left_epsilon, b.epsilon)
                    })
            };
            let mut rows = vec![header(&[
                "DATASET",
                "NODE",
                "STATE",
                "ROWS",
                "COLUMNS",
                "TAGS",
                "MOCK",
                "EPSILON LEFT",
            ])];
            for h in holders {
                rows.push(vec![
                    h.card.name.clone(),
                    h.node.clone(),
                    h.state.to_string(),
                    format!("~{}", h.card.rows),
                    columns(&h.card),
                    h.card.tags.join(","),
                    h.card.mock.clone().unwrap_or_else(|| "-".into()),
                    left(&h),
                ]);
            }
            print_table(&rows);
            Ok(())
        }
        Some(DatasetsCommand::Add(args)) => {
            let request = AddDataset {
                name: args.name,
                path: args.path,
                tags: args.tags,
                description: args.description,
                licence: args.licence,
                contact: args.contact,
                rows_bucket: args.rows_bucket,
                mock_rows: args.mock_rows,
                replace: args.replace,
            };
            let card = args.dir.client()?.add_dataset(&request).await?;
            if output.json {
                return print_json(&card);
            }
            println!(
                "declared dataset '{}': ~{} rows, columns {}",
                card.name,
                card.rows,
                columns(&card)
            );
            println!(
                "its card is {}/dataset.toml: edit it, then `iris datasets reload`",
                request.path
            );
            if let Some(mock) = &card.mock {
                println!("mock sample (synthetic rows, shared): {mock}");
            }
            Ok(())
        }
        Some(DatasetsCommand::Reload { dir }) => {
            let cards = dir.client()?.reload_datasets().await?;
            println!("{} datasets: {}", cards.len(), names(&cards));
            Ok(())
        }
        Some(DatasetsCommand::Rm { dir, name }) => {
            let cards = dir.client()?.remove_dataset(&name).await?;
            println!("'{name}' is off the network; left: {}", names(&cards));
            Ok(())
        }
    }
}

fn columns(card: &DatasetCard) -> String {
    card.schema
        .iter()
        .map(|c| format!("{}:{}", c.name, c.kind))
        .collect::<Vec<_>>()
        .join(" ")
}

fn names(cards: &[DatasetCard]) -> String {
    if cards.is_empty() {
        return "none".into();
    }
    cards
        .iter()
        .map(|c| c.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}
