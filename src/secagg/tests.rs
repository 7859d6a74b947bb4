//! The whole protocol with every party in memory: exact sums, masks that
//! look random, each kind of dropout, and a master that cheats.

use iris_behaviours::libp2p::{identity::Keypair, PeerId};

use super::*;

/// When a site stops answering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Leaves {
    Never,
    /// Sent its mask key, then nothing.
    AfterKeys,
    /// Sent its shares, then nothing (no vector).
    AfterSharing,
    /// Uploaded its vector, then nothing.
    AfterUpload,
    /// Signed the survivors, but never helps unmask.
    DuringUnmask,
}

struct Site {
    keypair: Keypair,
    participant: Participant,
    input: Vec<u64>,
    drop: Leaves,
}

fn sites(n: usize, length: usize) -> (Params, Vec<Keypair>) {
    let keypairs: Vec<Keypair> = (0..n).map(|_| Keypair::generate_ed25519()).collect();
    let peers = keypairs.iter().map(|k| k.public().to_peer_id()).collect();
    let master = PeerId::random();
    let params = Params::new(
        "job-1".into(),
        1,
        master,
        peers,
        length,
        FixedPoint::default(),
        None,
    )
    .unwrap();
    (params, keypairs)
}

/// A vector of `length` encoded values that differ by site.
fn input(site: usize, length: usize) -> Vec<u64> {
    let values: Vec<f64> = (0..length)
        .map(|i| ((i * 7 + site * 13) % 1000) as f64 / 8.0 - 60.0)
        .collect();
    FixedPoint::default().encode(&values).unwrap()
}

fn add(sum: &mut [u64], v: &[u64]) {
    for (s, x) in sum.iter_mut().zip(v) {
        *s = s.wrapping_add(*x);
    }
}

/// Runs a session where site i drops as `drops[i]` says; the outcome, and
/// the sum the survivors' inputs should give.
fn run(drops: &[Leaves], length: usize) -> (Result<aggregator::Sum, SecAggError>, Vec<u64>) {
    let (params, keypairs) = sites(drops.len(), length);
    let mut aggregator = Aggregator::new(params.clone()).unwrap();
    let mut sites: Vec<Site> = keypairs
        .into_iter()
        .enumerate()
        .map(|(i, keypair)| {
            let (participant, key) = Participant::new(params.clone(), &keypair).unwrap();
            aggregator.add_key(key).unwrap();
            Site {
                input: input(i, length),
                drop: drops[i],
                keypair,
                participant,
            }
        })
        .collect();
    let outcome = (|| {
        let roster = aggregator.roster()?;
        let mut sharers = Vec::new();
        let mut mail = Vec::new();
        for site in sites.iter_mut().filter(|s| s.drop != Leaves::AfterKeys) {
            let from = site.keypair.public().to_peer_id();
            for (to, bundle) in site.participant.share(&roster)? {
                mail.push((from, to, bundle));
            }
            sharers.push(from);
        }
        for (from, to, bundle) in mail {
            let site = sites
                .iter_mut()
                .find(|s| s.keypair.public().to_peer_id() == to);
            let site = site.unwrap();
            // A site that is gone receives nothing.
            if site.drop != Leaves::AfterKeys {
                site.participant.receive(from, bundle)?;
            }
        }
        let sharers = aggregator.fix_sharers(&sharers)?;
        let alive = |s: &&mut Site| !matches!(s.drop, Leaves::AfterKeys | Leaves::AfterSharing);
        for site in sites.iter_mut().filter(alive) {
            let masked = site.participant.masked(&sharers, &site.input)?;
            aggregator.add_upload(site.keypair.public().to_peer_id(), masked)?;
        }
        let survivors = aggregator.fix_survivors()?;
        for site in sites
            .iter_mut()
            .filter(alive)
            .filter(|s| s.drop != Leaves::AfterUpload)
        {
            let signature = site.participant.sign(&site.keypair, &survivors)?;
            aggregator.add_signature(site.keypair.public().to_peer_id(), signature)?;
        }
        let signatures = aggregator.signatures();
        for site in sites
            .iter_mut()
            .filter(alive)
            .filter(|s| matches!(s.drop, Leaves::Never))
        {
            let unmasking = site.participant.unmask(&survivors, &signatures)?;
            aggregator.add_unmasking(site.keypair.public().to_peer_id(), unmasking);
        }
        aggregator.finish()
    })();
    let mut expected = vec![0u64; length];
    for site in &sites {
        if matches!(
            site.drop,
            Leaves::Never | Leaves::AfterUpload | Leaves::DuringUnmask
        ) {
            add(&mut expected, &site.input);
        }
    }
    (outcome, expected)
}

#[test]
fn three_sites_with_a_million_entries_sum_exactly_bit_for_bit() {
    let (outcome, expected) = run(&[Leaves::Never; 3], 1_000_000);
    let sum = outcome.unwrap();
    assert_eq!(sum.values, expected);
    assert_eq!(sum.survivors.len(), 3);
    assert!(sum.dropped.is_empty());
    let decoded = FixedPoint::default().decode(&sum.values[..3]);
    let plain: Vec<f64> = (0..3)
        .map(|i| {
            (0..3)
                .map(|s| ((i * 7 + s * 13) % 1000) as f64 / 8.0 - 60.0)
                .sum()
        })
        .collect();
    assert_eq!(decoded, plain);
}

#[test]
fn a_masked_vector_looks_random_whatever_the_input() {
    let length = 200_000;
    let (params, keypairs) = sites(3, length);
    let mut parties: Vec<(Participant, SignedMaskKey)> = keypairs
        .iter()
        .map(|k| Participant::new(params.clone(), k).unwrap())
        .collect();
    let roster: Vec<SignedMaskKey> = parties.iter().map(|(_, k)| k.clone()).collect();
    let peers: Vec<PeerId> = roster.iter().map(|k| k.peer).collect();
    let mut mail = Vec::new();
    for (participant, key) in parties.iter_mut() {
        for (to, bundle) in participant.share(&roster).unwrap() {
            mail.push((key.peer, to, bundle));
        }
    }
    for (from, to, bundle) in mail {
        let (p, _) = parties.iter_mut().find(|(_, k)| k.peer == to).unwrap();
        p.receive(from, bundle).unwrap();
    }
    // The worst input to hide: a constant, and a ramp.
    let ramp: Vec<u64> = (0..length as u64).collect();
    for (input, (participant, _)) in [vec![0u64; length], ramp.clone(), ramp]
        .iter()
        .zip(parties.iter_mut())
    {
        let masked = participant.masked(&peers, input).unwrap();
        let mut counts = [0u64; 256];
        let mut ones = 0u64;
        for word in &masked {
            counts[(word >> 56) as usize] += 1;
            ones += word.count_ones() as u64;
        }
        let expected = length as f64 / 256.0;
        let chi2: f64 = counts
            .iter()
            .map(|c| (*c as f64 - expected).powi(2) / expected)
            .sum();
        assert!(
            (255.0 - 136.0..255.0 + 136.0).contains(&chi2),
            "chi² {chi2}"
        );
        let bits = 64.0 * length as f64;
        let balance = ones as f64 / bits;
        assert!((balance - 0.5).abs() < 5.0 / bits.sqrt(), "ones {balance}");
        let corr = correlation(input, &masked);
        assert!(corr.abs() < 5.0 / (length as f64).sqrt(), "corr {corr}");
    }
}

fn correlation(x: &[u64], y: &[u64]) -> f64 {
    let n = x.len() as f64;
    let (x, y): (Vec<f64>, Vec<f64>) = x.iter().zip(y).map(|(a, b)| (*a as f64, *b as f64)).unzip();
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let cov: f64 = x.iter().zip(&y).map(|(a, b)| (a - mx) * (b - my)).sum();
    let vx: f64 = x.iter().map(|a| (a - mx).powi(2)).sum();
    let vy: f64 = y.iter().map(|b| (b - my).powi(2)).sum();
    if vx == 0.0 {
        return 0.0; // a constant input: nothing to correlate with
    }
    cov / (vx * vy).sqrt()
}

#[test]
fn a_site_that_drops_in_any_phase_leaves_the_exact_sum_of_the_rest() {
    use Leaves::*;
    for drop in [AfterKeys, AfterSharing, AfterUpload, DuringUnmask] {
        let (outcome, expected) = run(&[Never, Never, drop, Never, Never], 5_000);
        let sum = outcome.unwrap_or_else(|e| panic!("{drop:?}: {e}"));
        assert_eq!(sum.values, expected, "{drop:?}");
        let in_sum = matches!(drop, AfterUpload | DuringUnmask);
        assert_eq!(sum.survivors.len(), if in_sum { 5 } else { 4 }, "{drop:?}");
    }
}

#[test]
fn too_many_dropouts_abort_cleanly_with_the_reason() {
    use Leaves::*;
    // 5 sites need 4: two that never upload leave 3 vectors.
    let (outcome, _) = run(&[Never, AfterSharing, AfterSharing, Never, Never], 100);
    let err = outcome.unwrap_err();
    assert!(matches!(err, SecAggError::Aborted(_)), "{err}");
    assert!(
        err.to_string().contains("3 vectors arrived, 4 are needed"),
        "{err}"
    );
    // 4 sites need 3: two that never help unmask leave 2 helpers.
    let (outcome, _) = run(&[Never, DuringUnmask, DuringUnmask, Never], 100);
    let err = outcome.unwrap_err();
    assert!(
        err.to_string()
            .contains("2 sites helped unmask, 3 are needed"),
        "{err}"
    );
}

/// A session of `n` honest sites over vectors of `length`, up to the
/// point where every site has shared: the parties, the aggregator and the
/// sites that shared.
fn shared_session(
    n: usize,
    length: usize,
) -> (Vec<(Keypair, Participant)>, Aggregator, Vec<PeerId>) {
    let (params, keypairs) = sites(n, length);
    let mut aggregator = Aggregator::new(params.clone()).unwrap();
    let mut parties: Vec<(Keypair, Participant)> = keypairs
        .into_iter()
        .map(|k| {
            let (p, key) = Participant::new(params.clone(), &k).unwrap();
            aggregator.add_key(key).unwrap();
            (k, p)
        })
        .collect();
    let roster = aggregator.roster().unwrap();
    let mut mail = Vec::new();
    for (k, p) in parties.iter_mut() {
        for (to, bundle) in p.share(&roster).unwrap() {
            mail.push((k.public().to_peer_id(), to, bundle));
        }
    }
    for (from, to, bundle) in mail {
        let (_, p) = parties
            .iter_mut()
            .find(|(k, _)| k.public().to_peer_id() == to)
            .unwrap();
        p.receive(from, bundle).unwrap();
    }
    let all: Vec<PeerId> = parties
        .iter()
        .map(|(k, _)| k.public().to_peer_id())
        .collect();
    let sharers = aggregator.fix_sharers(&all).unwrap();
    (parties, aggregator, sharers)
}

/// Builds a session up to its unmasking with every site honest; returns
/// the parties, the aggregator and the survivors.
fn up_to_unmasking(n: usize) -> (Vec<(Keypair, Participant)>, Aggregator, Vec<PeerId>) {
    let (mut parties, mut aggregator, sharers) = shared_session(n, 64);
    for (i, (k, p)) in parties.iter_mut().enumerate() {
        let masked = p.masked(&sharers, &input(i, 64)).unwrap();
        aggregator
            .add_upload(k.public().to_peer_id(), masked)
            .unwrap();
    }
    let survivors = aggregator.fix_survivors().unwrap();
    (parties, aggregator, survivors)
}

#[test]
fn a_master_that_asks_for_both_shares_of_one_site_is_refused() {
    let (mut parties, mut aggregator, survivors) = up_to_unmasking(4);
    for (k, p) in parties.iter_mut() {
        let signature = p.sign(k, &survivors).unwrap();
        aggregator
            .add_signature(k.public().to_peer_id(), signature)
            .unwrap();
    }
    let signatures = aggregator.signatures();
    let (_, first) = &mut parties[0];
    // The seed shares of all four, as the protocol allows...
    let unmasking = first.unmask(&survivors, &signatures).unwrap();
    assert_eq!((unmasking.seeds.len(), unmasking.keys.len()), (4, 0));
    // ...then the same site's key share, by calling one survivor dropped.
    let fewer = survivors[1..].to_vec();
    let err = first.unmask(&fewer, &signatures).unwrap_err();
    assert!(matches!(err, SecAggError::Refused(_)), "{err}");
    let (keypair, first) = &mut parties[0];
    let err = first.sign(keypair, &fewer).unwrap_err();
    assert!(err.to_string().contains("two different lists"), "{err}");
}

#[test]
fn a_master_that_shows_sites_different_survivor_lists_gets_no_unmasking() {
    let (mut parties, _, survivors) = up_to_unmasking(6);
    // Half the sites see all six survivors, the other half five: neither
    // list gathers the threshold of 5 signatures.
    let fewer = survivors[1..].to_vec();
    let mut signatures = Vec::new();
    for (i, (k, p)) in parties.iter_mut().enumerate() {
        let list = if i < 3 { &survivors } else { &fewer };
        signatures.push((k.public().to_peer_id(), p.sign(k, list).unwrap()));
    }
    for (i, (_, p)) in parties.iter_mut().enumerate() {
        let list = if i < 3 { &survivors } else { &fewer };
        let err = p.unmask(list, &signatures).unwrap_err();
        assert!(err.to_string().contains("3 sites signed"), "{err}");
    }
}

#[test]
fn a_late_upload_from_a_site_declared_dropped_leaves_the_sum_unchanged() {
    let (mut parties, mut aggregator, sharers) = shared_session(4, 32);
    let mut expected = vec![0u64; 32];
    let mut late = None;
    for (i, (k, p)) in parties.iter_mut().enumerate() {
        let masked = p.masked(&sharers, &input(i, 32)).unwrap();
        if i == 3 {
            late = Some((k.public().to_peer_id(), masked));
            continue;
        }
        add(&mut expected, &input(i, 32));
        aggregator
            .add_upload(k.public().to_peer_id(), masked)
            .unwrap();
    }
    let survivors = aggregator.fix_survivors().unwrap();
    let (peer, masked) = late.unwrap();
    let err = aggregator.add_upload(peer, masked).unwrap_err();
    assert!(
        err.to_string().contains("after the survivors were fixed"),
        "{err}"
    );
    for (k, p) in parties.iter_mut() {
        let signature = p.sign(k, &survivors).unwrap();
        aggregator
            .add_signature(k.public().to_peer_id(), signature)
            .unwrap();
    }
    let signatures = aggregator.signatures();
    for (k, p) in parties.iter_mut() {
        let unmasking = p.unmask(&survivors, &signatures).unwrap();
        aggregator.add_unmasking(k.public().to_peer_id(), unmasking);
    }
    let sum = aggregator.finish().unwrap();
    assert_eq!(sum.values, expected);
    assert_eq!(sum.dropped, vec![peer]);
}

#[test]
fn keys_of_another_session_or_forged_by_the_master_are_refused() {
    let (params, keypairs) = sites(3, 8);
    // The same sites, another list of participants: another session.
    let mut other = params.clone();
    other.round = 2;
    let (_, foreign) = Participant::new(other, &keypairs[1]).unwrap();
    let (mut site, own) = Participant::new(params.clone(), &keypairs[0]).unwrap();
    let (_, third) = Participant::new(params.clone(), &keypairs[2]).unwrap();
    let err = site
        .share(&[own.clone(), foreign, third.clone()])
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("not signed by it for this session"),
        "{err}"
    );
    // The master signs a key of its own in a site's name.
    let master = Keypair::generate_ed25519();
    let mut forged = SignedMaskKey::new(&master, &site.session(), [9; 32], [9; 32]);
    forged.peer = keypairs[1].public().to_peer_id();
    let err = site.share(&[own, forged, third]).unwrap_err();
    assert!(err.to_string().contains("not signed"), "{err}");
    let mut aggregator = Aggregator::new(params).unwrap();
    let outsider = Keypair::generate_ed25519();
    let stranger = SignedMaskKey::new(&outsider, &aggregator.session(), [1; 32], [1; 32]);
    assert!(aggregator.add_key(stranger).is_err());
}

#[test]
fn a_falsified_share_aborts_instead_of_unmasking_a_wrong_sum() {
    let (mut parties, mut aggregator, survivors) = up_to_unmasking(4);
    for (k, p) in parties.iter_mut() {
        let signature = p.sign(k, &survivors).unwrap();
        aggregator
            .add_signature(k.public().to_peer_id(), signature)
            .unwrap();
    }
    let signatures = aggregator.signatures();
    for (i, (k, p)) in parties.iter_mut().enumerate() {
        let mut unmasking = p.unmask(&survivors, &signatures).unwrap();
        if i == 0 {
            unmasking.seeds[2].1[5] ^= 1;
        }
        aggregator.add_unmasking(k.public().to_peer_id(), unmasking);
    }
    let err = aggregator.finish().unwrap_err();
    assert!(err.to_string().contains("falsified"), "{err}");
}

#[test]
fn unsafe_parameters_are_refused() {
    let peers: Vec<PeerId> = (0..2).map(|_| PeerId::random()).collect();
    let two = Params::new(
        "j".into(),
        1,
        PeerId::random(),
        peers,
        8,
        FixedPoint::default(),
        None,
    );
    assert!(two
        .unwrap_err()
        .to_string()
        .contains("3 to 255 participants"));
    let (mut params, _) = sites(6, 8);
    assert_eq!(params.threshold, 5);
    params.threshold = 3;
    assert!(
        params.validate().is_err(),
        "at most half the sites could unmask"
    );
    assert_eq!(default_threshold(3), 3);
    assert_eq!(default_threshold(10), 7);
}
