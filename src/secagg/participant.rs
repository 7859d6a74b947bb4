//! A site's side of a secure sum. It holds the site's secrets and the
//! shares other sites gave it, and it enforces the rules that keep a
//! site's vector hidden whatever the master asks: every key it uses is
//! signed by its site for this session; it masks once; it signs one list
//! of survivors; it reveals, for each site, a seed share or a key share,
//! never both.

use std::collections::{BTreeMap, BTreeSet};

use blahaj::Sharks;
use iris_behaviours::libp2p::{identity::Keypair, PeerId};
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use super::{
    commit_seed, mask::adds_pair_mask, mask::MaskKey, sign_survivors, verify_survivors, Params,
    SecAggError, SessionId, ShareBundle, SignedMaskKey, Unmasking,
};

/// Which of a site's secrets this site gave a share of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Revealed {
    Seed,
    Key,
}

pub struct Participant {
    params: Params,
    session: SessionId,
    me: PeerId,
    secret: StaticSecret,
    seed: Zeroizing<[u8; 32]>,
    /// The mask keys of the sites in the roster, each checked.
    keys: BTreeMap<PeerId, PublicKey>,
    /// Shares this site holds of each site's secrets (its own included).
    held: BTreeMap<PeerId, ShareBundle>,
    /// The sites it masked against (they shared), once it has masked.
    sharers: Option<BTreeSet<PeerId>>,
    /// The one list of survivors it signed.
    signed: Option<Vec<PeerId>>,
    revealed: BTreeMap<PeerId, Revealed>,
}

fn random_32() -> Zeroizing<[u8; 32]> {
    let mut bytes = Zeroizing::new([0u8; 32]);
    getrandom::fill(bytes.as_mut()).expect("the system's random source works");
    bytes
}

fn refused<T>(why: impl Into<String>) -> Result<T, SecAggError> {
    Err(SecAggError::Refused(why.into()))
}

impl Participant {
    /// Joins a session as the site `keypair` is: fresh secrets, and the
    /// signed mask key to send to the master.
    pub fn new(params: Params, keypair: &Keypair) -> Result<(Self, SignedMaskKey), SecAggError> {
        params.validate()?;
        let me = keypair.public().to_peer_id();
        if params.place_of(&me).is_none() {
            return refused("this node is not one of the session's participants");
        }
        let session = params.session_id();
        let secret = StaticSecret::from(*random_32());
        let seed = random_32();
        let key = SignedMaskKey::new(
            keypair,
            &session,
            PublicKey::from(&secret).to_bytes(),
            commit_seed(&session, seed.as_ref()),
        );
        let participant = Self {
            params,
            session,
            me,
            secret,
            seed,
            keys: BTreeMap::new(),
            held: BTreeMap::new(),
            sharers: None,
            signed: None,
            revealed: BTreeMap::new(),
        };
        Ok((participant, key))
    }

    pub fn session(&self) -> SessionId {
        self.session
    }

    pub fn params(&self) -> &Params {
        &self.params
    }

    /// Takes the roster of mask keys and splits this site's two secrets
    /// into shares, one for each site of the roster: what to send whom.
    pub fn share(
        &mut self,
        roster: &[SignedMaskKey],
    ) -> Result<Vec<(PeerId, ShareBundle)>, SecAggError> {
        if !self.keys.is_empty() {
            return refused("the roster was given already");
        }
        let mut keys = BTreeMap::new();
        for key in roster {
            key.verify(&self.session)?;
            if self.params.place_of(&key.peer).is_none() {
                return refused(format!("{} is not a participant", key.peer));
            }
            if keys.insert(key.peer, PublicKey::from(key.public)).is_some() {
                return refused(format!("{} is in the roster twice", key.peer));
            }
        }
        let mine = PublicKey::from(&self.secret);
        if keys.get(&self.me) != Some(&mine) {
            return refused("the roster does not carry this node's own mask key");
        }
        if keys.len() < self.params.threshold {
            return Err(SecAggError::Aborted(format!(
                "{} sites sent mask keys, {} are needed",
                keys.len(),
                self.params.threshold
            )));
        }
        self.keys = keys;
        let keys = &self.keys;
        self.held.retain(|peer, _| keys.contains_key(peer));
        let sharks = Sharks(self.params.threshold as u8);
        let n = self.params.participants.len();
        // Share i is at x = i (1-based), a participant's place.
        let seeds: Vec<Vec<u8>> = sharks
            .dealer(self.seed.as_ref())
            .take(n)
            .map(|s| Vec::from(&s))
            .collect();
        let secret = Zeroizing::new(self.secret.to_bytes());
        let secrets: Vec<Vec<u8>> = sharks
            .dealer(secret.as_ref())
            .take(n)
            .map(|s| Vec::from(&s))
            .collect();
        let mut out = Vec::new();
        for peer in self.keys.keys() {
            let place = self.params.place_of(peer).expect("checked above") as usize;
            let bundle = ShareBundle {
                session: self.session,
                seed_share: seeds[place - 1].clone(),
                key_share: secrets[place - 1].clone(),
            };
            if *peer == self.me {
                self.held.insert(self.me, bundle);
            } else {
                out.push((*peer, bundle));
            }
        }
        Ok(out)
    }

    /// Keeps the shares `from` sent this site.
    pub fn receive(&mut self, from: PeerId, bundle: ShareBundle) -> Result<(), SecAggError> {
        if bundle.session != self.session {
            return refused("shares of another session");
        }
        // Shares may come before this site has the roster (the sender got
        // it first): they are kept, and dropped at the roster if their
        // sender is not in it.
        let in_roster = match self.keys.is_empty() {
            true => self.params.place_of(&from).is_some(),
            false => self.keys.contains_key(&from),
        };
        if !in_roster {
            return refused(format!("{from} is not in the roster"));
        }
        let place = self.params.place_of(&self.me).expect("checked at start");
        let fits = |share: &[u8]| share.len() == 33 && share[0] == place;
        if !fits(&bundle.seed_share) || !fits(&bundle.key_share) {
            return refused(format!("{from} sent shares that are not this node's"));
        }
        if self.held.contains_key(&from) {
            return refused(format!("{from} sent its shares twice"));
        }
        self.held.insert(from, bundle);
        Ok(())
    }

    /// Masks this site's encoded vector against every site that shared
    /// (`sharers`, this one included); once per session.
    pub fn masked(&mut self, sharers: &[PeerId], input: &[u64]) -> Result<Vec<u64>, SecAggError> {
        if self.sharers.is_some() {
            return refused("this node masked its vector already");
        }
        if input.len() != self.params.length {
            return Err(SecAggError::Invalid(format!(
                "the vector has {} entries, the session {}",
                input.len(),
                self.params.length
            )));
        }
        let sharers: BTreeSet<PeerId> = sharers.iter().copied().collect();
        if !sharers.contains(&self.me) {
            return refused("this node is not among the sites that shared");
        }
        if sharers.len() < self.params.threshold {
            return Err(SecAggError::Aborted(format!(
                "{} sites shared their secrets, {} are needed",
                sharers.len(),
                self.params.threshold
            )));
        }
        if let Some(stranger) = sharers.iter().find(|p| !self.keys.contains_key(p)) {
            return refused(format!("{stranger} is not in the roster"));
        }
        if let Some(missing) = sharers.iter().find(|p| !self.held.contains_key(p)) {
            return refused(format!(
                "{missing} is said to have shared, but this node has no shares from it"
            ));
        }
        let mut vector = input.to_vec();
        MaskKey::from_seed(self.seed.as_ref(), &self.session).apply(&mut vector, true);
        for other in sharers.iter().filter(|p| **p != self.me) {
            let agreed = self.secret.diffie_hellman(&self.keys[other]);
            MaskKey::for_pair(agreed.as_bytes(), &self.session, &self.me, other)
                .apply(&mut vector, adds_pair_mask(&self.me, other));
        }
        self.sharers = Some(sharers);
        Ok(vector)
    }

    /// Signs the list of survivors the master announced: one list per
    /// session, within the sites that shared, and long enough to sum.
    pub fn sign(
        &mut self,
        keypair: &Keypair,
        survivors: &[PeerId],
    ) -> Result<Vec<u8>, SecAggError> {
        let survivors = self.check_survivors(survivors)?;
        match &self.signed {
            Some(signed) if *signed != survivors => {
                return refused("the master announced two different lists of survivors")
            }
            _ => self.signed = Some(survivors.clone()),
        }
        Ok(sign_survivors(keypair, &self.session, &survivors))
    }

    fn check_survivors(&self, survivors: &[PeerId]) -> Result<Vec<PeerId>, SecAggError> {
        let Some(sharers) = &self.sharers else {
            return refused("this node has not masked its vector yet");
        };
        let mut list = survivors.to_vec();
        list.sort();
        list.dedup();
        if list.len() != survivors.len() || list.iter().any(|p| !sharers.contains(p)) {
            return refused("the survivors must be distinct sites that shared");
        }
        if list.len() < self.params.threshold {
            return Err(SecAggError::Aborted(format!(
                "{} vectors arrived, {} are needed for a sum",
                list.len(),
                self.params.threshold
            )));
        }
        Ok(list)
    }

    /// Gives the master what it needs to unmask the sum of the survivors'
    /// vectors: a seed share of each survivor and a key share of each site
    /// that shared but dropped. Only for the list this site signed, once
    /// enough sites signed that same list.
    pub fn unmask(
        &mut self,
        survivors: &[PeerId],
        signatures: &[(PeerId, Vec<u8>)],
    ) -> Result<Unmasking, SecAggError> {
        let survivors = self.check_survivors(survivors)?;
        if self.signed.as_ref() != Some(&survivors) {
            return refused("this node did not sign that list of survivors");
        }
        let sharers = self.sharers.clone().expect("checked with the survivors");
        let signers: BTreeSet<PeerId> = signatures
            .iter()
            .filter(|(peer, signature)| {
                sharers.contains(peer)
                    && verify_survivors(peer, &self.session, &survivors, signature)
            })
            .map(|(peer, _)| *peer)
            .collect();
        if signers.len() < self.params.threshold {
            return refused(format!(
                "{} sites signed the list of survivors, {} must",
                signers.len(),
                self.params.threshold
            ));
        }
        let mut wanted = Vec::new();
        for site in &sharers {
            let kind = match survivors.binary_search(site) {
                Ok(_) => Revealed::Seed,
                Err(_) => Revealed::Key,
            };
            if self.revealed.get(site).is_some_and(|k| *k != kind) {
                return refused(format!(
                    "that would reveal both shares of {site}: its vector would be in the clear"
                ));
            }
            wanted.push((*site, kind));
        }
        let mut answer = Unmasking::default();
        for (site, kind) in wanted {
            self.revealed.insert(site, kind);
            let held = &self.held[&site];
            match kind {
                Revealed::Seed => answer.seeds.push((site, held.seed_share.clone())),
                Revealed::Key => answer.keys.push((site, held.key_share.clone())),
            }
        }
        Ok(answer)
    }
}
