//! `/v1/users`: the caller's profile; user administration (admin only).

use crate::{Client, Error, NewUser, Page, PageRequest, User};

impl Client {
    /// `GET /v1/users/me`: the logged-in user.
    pub async fn me(&self) -> Result<User, Error> {
        self.get_json("/v1/users/me").await
    }

    /// `GET /v1/users`: one page of the users of the caller's organisation (admin only; 403
    /// otherwise). Follow [`Page::next_cursor`] with [`PageRequest::after`].
    pub async fn list_users(&self, page: &PageRequest) -> Result<Page<User>, Error> {
        self.get_json_query("/v1/users", page).await
    }

    /// `POST /v1/users`: create a user in the caller's organisation (admin only). A taken
    /// email is a 409 `already_exists`; a weak password a 422 `weak_password`.
    pub async fn create_user(&self, user: &NewUser) -> Result<User, Error> {
        self.post_json("/v1/users", user).await
    }
}
