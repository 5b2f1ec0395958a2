//! What the batcher's unit tests share: a fleet of phones in the in-process simulator, and a
//! client of it.

use crate::koophone::{Client, ClientConfig, Token};
use crate::sim::{SimConfig, Simulator};

pub(super) fn ids(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("inst-{i:05}")).collect()
}

pub(super) async fn fleet(n: usize, status: i64) -> (Simulator, Client) {
    faulty_fleet(n, status, crate::sim::Faults::default()).await
}

pub(super) async fn faulty_fleet(
    n: usize,
    status: i64,
    faults: crate::sim::Faults,
) -> (Simulator, Client) {
    let sim = Simulator::start(
        SimConfig {
            instances: ids(n).into_iter().map(|id| (id, status)).collect(),
            faults,
            ..SimConfig::default()
        },
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let client = Client::new(
        ClientConfig {
            base_url: sim.url(),
            ..ClientConfig::default()
        },
        Token::new("t"),
    )
    .unwrap();
    (sim, client)
}
