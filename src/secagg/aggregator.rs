//! The master's side of a secure sum. It relays nothing secret: it
//! collects the signed mask keys, learns who shared and who uploaded, and
//! in the end rebuilds exactly the masks that do not cancel: the self masks
//! of the survivors and the pairwise masks of the sites that dropped after
//! sharing. Every rebuilt secret is checked against what its site
//! committed to, so falsified shares abort the session instead of
//! unmasking a wrong sum.

use std::collections::{BTreeMap, BTreeSet};

use blahaj::{Share, Sharks};
use iris_behaviours::libp2p::PeerId;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use super::{
    commit_seed, mask::adds_pair_mask, mask::MaskKey, verify_survivors, Params, SecAggError,
    SessionId, SignedMaskKey, Unmasking,
};

/// The outcome: the sum of the survivors' vectors, still encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sum {
    pub values: Vec<u64>,
    /// Whose vectors are in it.
    pub survivors: Vec<PeerId>,
    /// Participants whose vectors are not.
    pub dropped: Vec<PeerId>,
}

pub struct Aggregator {
    params: Params,
    session: SessionId,
    keys: BTreeMap<PeerId, SignedMaskKey>,
    sharers: Option<BTreeSet<PeerId>>,
    uploads: BTreeMap<PeerId, Vec<u64>>,
    survivors: Option<Vec<PeerId>>,
    signatures: BTreeMap<PeerId, Vec<u8>>,
    unmaskings: BTreeMap<PeerId, Unmasking>,
}

fn aborted<T>(why: impl Into<String>) -> Result<T, SecAggError> {
    Err(SecAggError::Aborted(why.into()))
}

fn refused<T>(why: impl Into<String>) -> Result<T, SecAggError> {
    Err(SecAggError::Refused(why.into()))
}

impl Aggregator {
    pub fn new(params: Params) -> Result<Self, SecAggError> {
        params.validate()?;
        Ok(Self {
            session: params.session_id(),
            params,
            keys: BTreeMap::new(),
            sharers: None,
            uploads: BTreeMap::new(),
            survivors: None,
            signatures: BTreeMap::new(),
            unmaskings: BTreeMap::new(),
        })
    }

    pub fn params(&self) -> &Params {
        &self.params
    }

    pub fn session(&self) -> SessionId {
        self.session
    }

    /// A site's mask key, checked, before the roster is sent.
    pub fn add_key(&mut self, key: SignedMaskKey) -> Result<(), SecAggError> {
        key.verify(&self.session)?;
        if self.params.place_of(&key.peer).is_none() {
            return refused(format!("{} is not a participant", key.peer));
        }
        if self.sharers.is_some() || self.keys.contains_key(&key.peer) {
            return refused(format!("a late or second mask key from {}", key.peer));
        }
        self.keys.insert(key.peer, key);
        Ok(())
    }

    /// The signed keys every site checks before it shares.
    pub fn roster(&self) -> Result<Vec<SignedMaskKey>, SecAggError> {
        if self.keys.len() < self.params.threshold {
            return aborted(format!(
                "{} sites sent mask keys, {} are needed",
                self.keys.len(),
                self.params.threshold
            ));
        }
        Ok(self.keys.values().cloned().collect())
    }

    /// Fixes the sites that said they sent their shares; every vector is
    /// masked against exactly these.
    pub fn fix_sharers(&mut self, sharers: &[PeerId]) -> Result<Vec<PeerId>, SecAggError> {
        let set: BTreeSet<PeerId> = sharers.iter().copied().collect();
        if set.iter().any(|p| !self.keys.contains_key(p)) {
            return refused("a site that shared is not in the roster");
        }
        if set.len() < self.params.threshold {
            return aborted(format!(
                "{} sites shared their secrets, {} are needed",
                set.len(),
                self.params.threshold
            ));
        }
        let list = set.iter().copied().collect();
        self.sharers = Some(set);
        Ok(list)
    }

    /// A site's masked vector, until the survivors are fixed.
    pub fn add_upload(&mut self, peer: PeerId, masked: Vec<u64>) -> Result<(), SecAggError> {
        if self.survivors.is_some() {
            return refused(format!(
                "the vector of {peer} arrived after the survivors were fixed"
            ));
        }
        if !self.sharers.as_ref().is_some_and(|s| s.contains(&peer)) {
            return refused(format!("{peer} did not share its secrets"));
        }
        if masked.len() != self.params.length || self.uploads.contains_key(&peer) {
            return refused(format!("a wrong-sized or second vector from {peer}"));
        }
        self.uploads.insert(peer, masked);
        Ok(())
    }

    /// Closes the uploads: the sites whose vectors arrived are the survivors.
    pub fn fix_survivors(&mut self) -> Result<Vec<PeerId>, SecAggError> {
        if self.uploads.len() < self.params.threshold {
            return aborted(format!(
                "{} vectors arrived, {} are needed for a sum",
                self.uploads.len(),
                self.params.threshold
            ));
        }
        let survivors: Vec<PeerId> = self.uploads.keys().copied().collect();
        self.survivors = Some(survivors.clone());
        Ok(survivors)
    }

    /// A site's signature over the survivors.
    pub fn add_signature(&mut self, peer: PeerId, signature: Vec<u8>) -> Result<(), SecAggError> {
        let survivors = self
            .survivors
            .as_ref()
            .ok_or_else(|| SecAggError::Refused("no list of survivors to sign yet".into()))?;
        if !verify_survivors(&peer, &self.session, survivors, &signature) {
            return refused(format!("{peer}'s signature is not over these survivors"));
        }
        self.signatures.insert(peer, signature);
        Ok(())
    }

    /// The signatures every survivor checks before it unmasks.
    pub fn signatures(&self) -> Vec<(PeerId, Vec<u8>)> {
        self.signatures
            .iter()
            .map(|(p, s)| (*p, s.clone()))
            .collect()
    }

    pub fn add_unmasking(&mut self, peer: PeerId, unmasking: Unmasking) {
        if self.sharers.as_ref().is_some_and(|s| s.contains(&peer)) {
            self.unmaskings.insert(peer, unmasking);
        }
    }

    /// Rebuilds the masks that do not cancel and takes them out of the
    /// sum of the survivors' vectors.
    pub fn finish(&self) -> Result<Sum, SecAggError> {
        let (Some(sharers), Some(survivors)) = (&self.sharers, &self.survivors) else {
            return aborted("the session did not reach its unmasking");
        };
        let t = self.params.threshold;
        if self.unmaskings.len() < t {
            return aborted(format!(
                "{} sites helped unmask, {t} are needed",
                self.unmaskings.len()
            ));
        }
        let mut sum = vec![0u64; self.params.length];
        for vector in self.uploads.values() {
            for (total, v) in sum.iter_mut().zip(vector) {
                *total = total.wrapping_add(*v);
            }
        }
        for site in survivors {
            let seed = self.rebuild(site, |u| &u.seeds)?;
            if commit_seed(&self.session, &seed) != self.keys[site].seed_commitment {
                return aborted(format!(
                    "the shares of {site}'s seed rebuild a seed it did not commit to: someone falsified a share"
                ));
            }
            MaskKey::from_seed(&seed, &self.session).apply(&mut sum, false);
        }
        for gone in sharers
            .iter()
            .filter(|p| survivors.binary_search(p).is_err())
        {
            let bytes = self.rebuild(gone, |u| &u.keys)?;
            let secret =
                StaticSecret::from(<[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| {
                    SecAggError::Aborted(format!("{gone}'s key shares are not 32 bytes"))
                })?);
            if PublicKey::from(&secret).to_bytes() != self.keys[gone].public {
                return aborted(format!(
                    "the shares of {gone}'s key rebuild another key: someone falsified a share"
                ));
            }
            for site in survivors {
                let public = PublicKey::from(self.keys[site].public);
                let agreed = secret.diffie_hellman(&public);
                // The survivor added (or took) this mask; take it back out.
                MaskKey::for_pair(agreed.as_bytes(), &self.session, site, gone)
                    .apply(&mut sum, !adds_pair_mask(site, gone));
            }
        }
        Ok(Sum {
            values: sum,
            survivors: survivors.clone(),
            dropped: self
                .params
                .participants
                .iter()
                .filter(|p| survivors.binary_search(p).is_err())
                .copied()
                .collect(),
        })
    }

    /// A secret of `site` from the shares the unmasking sites gave of it.
    fn rebuild(
        &self,
        site: &PeerId,
        shares_in: impl Fn(&Unmasking) -> &Vec<(PeerId, Vec<u8>)>,
    ) -> Result<Zeroizing<Vec<u8>>, SecAggError> {
        let mut shares = Vec::new();
        let mut places = BTreeSet::new();
        for (giver, unmasking) in &self.unmaskings {
            let place = self.params.place_of(giver).expect("a participant");
            for (of, bytes) in shares_in(unmasking) {
                // A share is only taken from the site whose place it has.
                if of == site && bytes.first() == Some(&place) && places.insert(place) {
                    shares.push(Share::try_from(bytes.as_slice()).map_err(|e| {
                        SecAggError::Aborted(format!("a share of {site} is malformed: {e}"))
                    })?);
                }
            }
        }
        if shares.len() < self.params.threshold {
            return aborted(format!(
                "{} shares of {site}'s secret came back, {} are needed",
                shares.len(),
                self.params.threshold
            ));
        }
        Sharks(self.params.threshold as u8)
            .recover(&shares)
            .map(Zeroizing::new)
            .map_err(|e| SecAggError::Aborted(format!("cannot rebuild {site}'s secret: {e}")))
    }
}
