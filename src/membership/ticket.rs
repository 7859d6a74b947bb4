//! Join tickets: `iris:<network id>@<member address>`. The id is the hash
//! of the network's signed config, so a node that joins with a ticket
//! accepts only that network and that master, whoever the bootstrap is.
//! A bare member address still works, with the master taken on trust.

use std::{fmt, str::FromStr};

use iris_behaviours::libp2p::Multiaddr;

const PREFIX: &str = "iris:";

/// Where to join, and, from a ticket, which network it must be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinTicket {
    pub network_id: Option<String>,
    pub bootstrap: Multiaddr,
}

impl JoinTicket {
    pub fn new(network_id: String, bootstrap: Multiaddr) -> Self {
        Self {
            network_id: Some(network_id),
            bootstrap,
        }
    }
}

impl fmt::Display for JoinTicket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.network_id {
            Some(id) => write!(f, "{PREFIX}{id}@{}", self.bootstrap),
            None => write!(f, "{}", self.bootstrap),
        }
    }
}

impl FromStr for JoinTicket {
    type Err = String;

    /// A ticket, or a member's multiaddr.
    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err("give a join ticket or a member's address".into());
        }
        let (network_id, address) = match text.strip_prefix(PREFIX) {
            Some(ticket) => {
                let (id, address) = ticket
                    .split_once('@')
                    .ok_or_else(|| format!("ticket '{text}' is not iris:<network id>@<address>"))?;
                if id.len() != 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(format!(
                        "ticket '{text}': the network id must be 64 hex digits"
                    ));
                }
                (Some(id.to_ascii_lowercase()), address)
            }
            None => (None, text),
        };
        let bootstrap = address
            .parse()
            .map_err(|e| format!("bootstrap '{address}' is not a multiaddr: {e}"))?;
        Ok(Self {
            network_id,
            bootstrap,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tickets_and_bare_addresses_parse_and_print_back() {
        let address =
            "/ip4/10.0.0.1/tcp/4001/p2p/12D3KooWQtWxU4KyAC3ZCMQZNfnA6bTNWkFoXZ6kyb4yc5EiQX9s";
        let id = "ab".repeat(32);
        let ticket: JoinTicket = format!("iris:{id}@{address}").parse().unwrap();
        assert_eq!(ticket.network_id.as_deref(), Some(id.as_str()));
        assert_eq!(ticket.to_string(), format!("iris:{id}@{address}"));
        let bare: JoinTicket = address.parse().unwrap();
        assert_eq!(bare.network_id, None);
        for bad in ["iris:abc@/ip4/1.2.3.4", "iris:nope", "not an address", ""] {
            assert!(bad.parse::<JoinTicket>().is_err(), "{bad}");
        }
    }
}
