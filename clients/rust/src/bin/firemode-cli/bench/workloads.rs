//! The workloads. Each has a `setup` (unmeasured) and a measured `run_one`; add new ones here
//! and a subcommand in `main.rs` (`evidence-upload`, `create-session`, sync, ...).

use firemode_client::{Client, Error};

use super::Workload;

/// `GET /v1/users/me` with one bearer token: JWT check in memory plus one database read
/// (user by id) and a PII decrypt per request.
pub struct UsersMe;

impl UsersMe {
    /// Log in once; every task then shares the token.
    pub async fn setup(client: &Client, email: &str, password: &str) -> Result<Self, Error> {
        client.login(email, password).await?;
        // Fail here, not a million times in the loop, if the token is unusable.
        client.me().await?;
        Ok(UsersMe)
    }
}

impl Workload for UsersMe {
    fn name(&self) -> &'static str {
        "users-me"
    }

    async fn run_one(&self, client: &Client) -> Result<(), Error> {
        client.me().await.map(drop)
    }
}

/// `POST /v1/tests/sessions`: the server reads the building's assets and the rule library,
/// builds the session's automerge document (one item per asset due at the frequency) and its
/// projection (one result row per item), stores the session row, the document's change with
/// its attribution and the result rows in one transaction, writes an audit row, and answers 201.
pub struct CreateSession {
    building: uuid::Uuid,
    frequency: String,
    next: std::sync::atomic::AtomicU64,
}

/// Asset kinds with six-monthly routines in the shipped AS 1851 library, cycled through.
pub const SIX_MONTHLY_KINDS: [&str; 8] = [
    "portable_extinguisher",
    "fire_hose_reel",
    "emergency_lighting",
    "exit_sign",
    "fire_door",
    "smoke_door",
    "fire_blanket",
    "fire_detection_alarm",
];

impl CreateSession {
    /// Log in, create a building with `assets` assets (one CSV import) unless one is given.
    pub async fn setup(
        client: &Client,
        email: &str,
        password: &str,
        building: Option<uuid::Uuid>,
        assets: usize,
        frequency: &str,
    ) -> Result<Self, Error> {
        client.login(email, password).await?;
        let building = match building {
            Some(b) => b,
            None => super::fixtures::create_building(client, &SIX_MONTHLY_KINDS, assets).await?,
        };
        let me = CreateSession {
            building,
            frequency: frequency.to_owned(),
            next: std::sync::atomic::AtomicU64::new(0),
        };
        // Fail here, not in every request of the loop, if creation cannot work.
        me.run_one(client).await?;
        Ok(me)
    }
}

impl Workload for CreateSession {
    fn name(&self) -> &'static str {
        "create-session"
    }

    async fn run_one(&self, client: &Client) -> Result<(), Error> {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("Bench round {n}");
        super::fixtures::create_session(client, self.building, &name, &self.frequency)
            .await
            .map(drop)
    }
}
