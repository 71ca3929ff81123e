//! The builders the migrations share, so every table spells a type, a foreign key and an
//! index the same way. The migrations are history applied to live databases: a change
//! here must leave the SQL they produce exactly as it is.

use sea_orm_migration::prelude::*;

/// A UUID primary key kept as text: portable across engines and readable in `psql`.
pub fn id_pk<T: IntoIden>(name: T) -> ColumnDef {
    ColumnDef::new(name).string_len(36).not_null().primary_key().to_owned()
}

pub fn uuid_ref<T: IntoIden>(name: T) -> ColumnDef {
    ColumnDef::new(name).string_len(36).not_null().to_owned()
}

pub fn text<T: IntoIden>(name: T) -> ColumnDef {
    ColumnDef::new(name).text().not_null().to_owned()
}

pub fn text_null<T: IntoIden>(name: T) -> ColumnDef {
    ColumnDef::new(name).text().null().to_owned()
}

pub fn unix_time<T: IntoIden>(name: T) -> ColumnDef {
    ColumnDef::new(name).big_integer().not_null().to_owned()
}

pub fn unix_time_null<T: IntoIden>(name: T) -> ColumnDef {
    ColumnDef::new(name).big_integer().null().to_owned()
}

/// `from_table.from_column` references `to_table.to_column`; its rows go with the row
/// they point at (every reference in the schema does).
pub fn cascade(
    from_table: impl IntoTableRef,
    from_column: impl IntoIden,
    to_table: impl IntoTableRef,
    to_column: impl IntoIden,
) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .from(from_table, from_column)
        .to(to_table, to_column)
        .on_delete(ForeignKeyAction::Cascade)
        .to_owned()
}

/// A reference to a role by its name, which also follows the role when it is renamed.
pub fn role_cascade(
    from_table: impl IntoTableRef,
    from_column: impl IntoIden,
    roles: impl IntoTableRef,
    name: impl IntoIden,
) -> ForeignKeyCreateStatement {
    cascade(from_table, from_column, roles, name).on_update(ForeignKeyAction::Cascade).to_owned()
}

/// An index named `name` on one column of `table`; callers add columns or `unique()`.
pub fn index(name: &str, table: impl IntoTableRef, column: impl IntoIndexColumn) -> IndexCreateStatement {
    Index::create().name(name).table(table).col(column).to_owned()
}

/// Drops the index `name` of `table`.
pub async fn drop_index(manager: &SchemaManager<'_>, name: &str, table: impl IntoTableRef) -> Result<(), DbErr> {
    manager.drop_index(Index::drop().name(name).table(table).to_owned()).await
}

/// Drops `tables` in their order: dependents first.
pub async fn drop_tables(manager: &SchemaManager<'_>, tables: impl IntoIterator<Item = DynIden>) -> Result<(), DbErr> {
    for table in tables {
        manager.drop_table(Table::drop().table(table).to_owned()).await?;
    }
    Ok(())
}
