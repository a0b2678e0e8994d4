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
