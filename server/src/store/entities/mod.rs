//! sea-orm entities, one per table. They are storage types only: the API never
//! serialises them (see `api::models`), and only `store` touches them.

use sea_orm::sea_query::StringLen;

pub mod audit_events;
pub mod authorization_codes;
pub mod authorization_requests;
pub mod client_roles;
pub mod clients;
pub mod consents;
pub mod dpop_proofs;
pub mod email_tokens;
pub mod mfa_challenges;
pub mod outbox;
pub mod passkeys;
pub mod recovery_codes;
pub mod refresh_tokens;
pub mod role_permissions;
pub mod roles;
pub mod sessions;
pub mod signing_keys;
pub mod sso_sessions;
pub mod user_roles;
pub mod username_skeletons;
pub mod users;
pub mod webauthn_ceremonies;

/// A column whose values are a closed set of words: an enum stored as its word, with
/// `as_str` (the stored and displayed word) and `Display`, so every `match` on a state
/// is checked by the compiler and no caller compares free strings.
macro_rules! word_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $word:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, sea_orm::EnumIter, sea_orm::DeriveActiveEnum)]
        #[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
        pub enum $name {
            $($(#[$vmeta])* #[sea_orm(string_value = $word)] $variant,)+
        }

        impl $name {
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $word,)+
                }
            }

            /// The value of a stored or submitted word, `None` for any other text.
            pub fn parse(word: &str) -> Option<Self> {
                match word {
                    $($word => Some($name::$variant),)+
                    _ => None,
                }
            }
        }

        /// Read straight from a SQLite column (the inline connections of `store::sqlite`).
        impl rusqlite::types::FromSql for $name {
            fn column_result(value: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
                Self::parse(value.as_str()?).ok_or(rusqlite::types::FromSqlError::InvalidType)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

word_enum! {
    /// The state of one refresh token.
    TokenState {
        Active = "active",
        /// Used once; its child is the live token.
        Rotated = "rotated",
        Revoked = "revoked",
    }
}

word_enum! {
    UserStatus {
        Active = "active",
        Disabled = "disabled",
    }
}

word_enum! {
    ClientType {
        /// Cannot keep a secret (a browser app, a native app).
        Public = "public",
        /// Authenticates with a secret.
        Confidential = "confidential",
    }
}

word_enum! {
    /// Where a signing key is in its lifecycle (see `domain::keys`).
    KeyState {
        /// Published, not yet signing.
        Pending = "pending",
        Active = "active",
        /// Published until its last token expired, no longer signing.
        Retired = "retired",
        /// Withdrawn at once.
        Revoked = "revoked",
    }
}

word_enum! {
    /// What an outbox message is, and so how its payload reads.
    OutboxKind {
        /// A logout token for a relying party (OpenID Connect Back-Channel Logout).
        BackchannelLogout = "backchannel_logout",
        /// A mail message (its payload sealed under the master key: it may carry a link
        /// that grants something, and is cleared once delivered or given up).
        Mail = "mail",
    }
}

word_enum! {
    /// What a mailed token lets its holder do.
    EmailTokenPurpose {
        /// Set a new password.
        Reset = "reset",
        /// Prove the address is theirs.
        Verify = "verify",
    }
}

word_enum! {
    /// Where an outbox message is.
    OutboxState {
        /// Waiting for its next attempt (or being attempted, under a node's lease).
        Pending = "pending",
        Delivered = "delivered",
        /// Given up after the last attempt, or its recipient is gone.
        Dead = "dead",
    }
}
