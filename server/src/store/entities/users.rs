use sea_orm::entity::prelude::*;

// Debug by hand: the password hash and the TOTP secrets never reach a log.
#[derive(Clone, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "users")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub username: String,
    pub username_normalized: String,
    pub email: Option<String>,
    pub password_hash: String,
    pub status: super::UserStatus,
    pub created_at: i64,
    pub updated_at: i64,
    pub failed_logins: i32,
    pub locked_until: Option<i64>,
    pub totp_failures: i32,
    pub totp_locked_until: Option<i64>,
    pub totp_secret_encrypted: Option<String>,
    pub totp_pending_encrypted: Option<String>,
    pub totp_enabled: bool,
    pub totp_last_step: Option<i64>,
    pub email_verified: bool,
    pub self_registered: bool,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("username", &self.username)
            .field("status", &self.status)
            .field("password_hash", &"<secret>")
            .field("totp_enabled", &self.totp_enabled)
            .field("email_verified", &self.email_verified)
            .finish_non_exhaustive()
    }
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

/// A user row for unit tests of the rules: active, no lock, no TOTP.
#[cfg(test)]
pub(crate) fn test_user(status: super::UserStatus) -> Model {
    Model {
        id: "u1".into(),
        username: "ada".into(),
        username_normalized: "ada".into(),
        email: None,
        password_hash: String::new(),
        status,
        created_at: 0,
        updated_at: 0,
        failed_logins: 0,
        locked_until: None,
        totp_failures: 0,
        totp_locked_until: None,
        totp_secret_encrypted: None,
        totp_pending_encrypted: None,
        totp_enabled: false,
        totp_last_step: None,
        email_verified: false,
        self_registered: false,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn debug_never_shows_the_password_hash_or_totp_secrets() {
        let row = super::Model {
            password_hash: "$argon2id$v=19$SECRETHASH".into(),
            totp_secret_encrypted: Some("SECRETTOTP".into()),
            totp_pending_encrypted: Some("SECRETPENDING".into()),
            totp_enabled: true,
            ..super::test_user(crate::store::entities::UserStatus::Active)
        };
        let shown = format!("{row:?}");
        assert!(!shown.contains("SECRET"), "{shown}");
    }
}
