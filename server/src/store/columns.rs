//! Select lists derived from the sea-orm entities, for the hand-written SQL of the
//! engine modules: a column added to an entity appears in every query that selects
//! the entity, in the entity's order, with no list to keep in step by hand.

use std::fmt;
use std::marker::PhantomData;

use sea_orm::{EntityTrait, IdenStatic, Iterable};

use super::entities::{refresh_tokens, sessions, users};

/// Every column of `E` as `alias.column AS alias_column`, in declaration order: the
/// prefixed names sea-orm's `FromQueryResult` reads, and the positions the SQLite
/// engine's row mapper reads.
pub fn aliased<E: EntityTrait>(alias: &'static str) -> Aliased<E> {
    Aliased(alias, PhantomData)
}

/// See [`aliased`].
pub struct Aliased<E>(&'static str, PhantomData<E>);

impl<E: EntityTrait> fmt::Display for Aliased<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let alias = self.0;
        for (i, column) in E::Column::iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            let name = column.as_str();
            write!(f, "{alias}.{name} AS {alias}_{name}")?;
        }
        Ok(())
    }
}

/// Every column of `E` by its bare name, in declaration order (for a `RETURNING`
/// clause, which may not name the table by an alias).
pub fn names<E: EntityTrait>() -> String {
    E::Column::iter().map(|c| c.as_str()).collect::<Vec<_>>().join(", ")
}

/// Token, session, user and the user's roles by token hash. `$1` is a positional
/// parameter on PostgreSQL and a numbered one on SQLite; the engines differ only in
/// the name of the string aggregate.
pub fn token_for_refresh_sql(aggregate: &str) -> String {
    format!(
        "SELECT {}, {}, {}, (SELECT {aggregate}(r.role_name, ' ') FROM user_roles r WHERE r.user_id = s.user_id) \
         AS roles FROM refresh_tokens t JOIN sessions s ON s.id = t.session_id \
         LEFT JOIN users u ON u.id = s.user_id WHERE t.token_hash = $1",
        aliased::<refresh_tokens::Entity>("t"),
        aliased::<sessions::Entity>("s"),
        aliased::<users::Entity>("u"),
    )
}

/// Role names are single words (see `rbac`), so a space separates them; sorted here
/// because neither aggregate promises an order.
pub fn split_roles(joined: Option<String>) -> Vec<String> {
    let mut roles: Vec<String> = joined.unwrap_or_default().split_ascii_whitespace().map(str::to_string).collect();
    roles.sort_unstable();
    roles
}
