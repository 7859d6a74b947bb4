//! `[p2p]` of `iris.toml`: where the node listens for peers, what it
//! announces, whether it relays for members behind NAT, and the HTTP proxy
//! its connections out may have to go through.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct P2pConfig {
    /// Interface to listen on for peers (0.0.0.0: all).
    pub listen: IpAddr,
    /// TCP port for peers; 0 picks a free one at start.
    pub port: u16,
    /// Addresses to announce besides the listening ones, e.g. behind NAT.
    pub external: Vec<String>,
    /// Whether this node relays for members that cannot be dialed.
    pub relay: RelayMode,
    /// An HTTP proxy every dial goes through (CONNECT), as `IP:PORT`, for
    /// a site whose firewall lets connections out only through it.
    pub proxy: Option<String>,
}

impl P2pConfig {
    /// The proxy as `iris.toml` gives it, `[http://][USER:PASSWORD@]HOST:PORT`,
    /// in its parts: `HOST:PORT` and the credentials. Errors never repeat a
    /// password.
    pub(super) fn proxy_parts(&self) -> Result<Option<(&str, Option<&str>)>, String> {
        let Some(proxy) = &self.proxy else {
            return Ok(None);
        };
        let bare = proxy.strip_prefix("http://").unwrap_or(proxy);
        let bare = bare.trim_end_matches('/');
        let (credentials, host_port) = match bare.rsplit_once('@') {
            Some((credentials, host_port)) => (Some(credentials), host_port),
            None => (None, bare),
        };
        let port = host_port.rsplit_once(':').map(|(_, port)| port);
        if host_port.is_empty() || !port.is_some_and(|p| p.parse::<u16>().is_ok_and(|p| p > 0)) {
            return Err(format!(
                "p2p.proxy '{host_port}' is not a host and port, e.g. \"10.0.0.1:3128\" or \
                 \"http://user:password@proxy.example:3128\""
            ));
        }
        if credentials.is_some_and(|c| !c.contains(':')) {
            return Err("p2p.proxy's credentials are not USER:PASSWORD".into());
        }
        Ok(Some((host_port, credentials)))
    }

    /// The proxy's address (a host name looked up now, at the node's start)
    /// and credentials, if one is set.
    pub fn proxy(&self) -> Result<Option<(std::net::SocketAddr, Option<String>)>, String> {
        use std::net::ToSocketAddrs;
        let Some((host_port, credentials)) = self.proxy_parts()? else {
            return Ok(None);
        };
        let addr = host_port
            .to_socket_addrs()
            .ok()
            .and_then(|mut addrs| addrs.next())
            .ok_or_else(|| format!("p2p.proxy '{host_port}': no address found for that host"))?;
        Ok(Some((addr, credentials.map(str::to_string))))
    }
}

impl Default for P2pConfig {
    fn default() -> Self {
        Self {
            listen: [0, 0, 0, 0].into(),
            port: 7000,
            external: Vec::new(),
            relay: RelayMode::Auto,
            proxy: None,
        }
    }
}

/// Whether a node serves as a relay for the network's members that cannot
/// be dialed (docs/site-it.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RelayMode {
    /// The master serves, the other members do not.
    Auto,
    /// This node serves: give it an address every site can reach.
    Serve,
    /// This node never serves.
    Off,
}

impl RelayMode {
    /// As `iris.toml` spells it.
    pub fn name(self) -> &'static str {
        match self {
            RelayMode::Auto => "auto",
            RelayMode::Serve => "serve",
            RelayMode::Off => "off",
        }
    }

    /// Whether a node of this role serves.
    pub fn serves(self, is_master: bool) -> bool {
        match self {
            RelayMode::Auto => is_master,
            RelayMode::Serve => true,
            RelayMode::Off => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proxy_is_a_host_and_port_with_credentials_if_any() {
        let with = |proxy: &str| P2pConfig {
            proxy: Some(proxy.into()),
            ..P2pConfig::default()
        };
        let (addr, credentials) = with("10.0.0.1:3128").proxy().unwrap().unwrap();
        assert_eq!(
            (addr.to_string().as_str(), credentials),
            ("10.0.0.1:3128", None)
        );
        let (addr, credentials) = with("http://site:s3:cret@127.0.0.1:8080/")
            .proxy()
            .unwrap()
            .unwrap();
        assert_eq!(addr.port(), 8080);
        assert_eq!(credentials.as_deref(), Some("site:s3:cret"));
        assert!(
            with("localhost:3128").proxy().unwrap().is_some(),
            "a host name"
        );
        for bad in [
            "10.0.0.1",
            "10.0.0.1:0",
            "10.0.0.1:port",
            "secret@10.0.0.1:1",
            ":3128",
        ] {
            let error = with(bad).proxy().unwrap_err();
            assert!(!error.contains("secret"), "a password repeated: {error}");
        }
        assert_eq!(P2pConfig::default().proxy().unwrap(), None);
    }
}
