//! A screen's list: the records it last loaded together with the [`Table`] over them
//! (selection and page). Every screen keeps one, so storing what arrived, finding the
//! selected record and turning records into rows live here rather than in each screen.

use crate::api::Page;
use crate::components::detail::Detail;
use crate::components::table::{Column, Table, TableView};
use crate::outcome::Outcome;
use crate::popup::Popup;

pub struct List<T> {
    items: Vec<T>,
    table: Table,
}

/// Not derived: that would ask `T: Default` of every record type.
impl<T> Default for List<T> {
    fn default() -> Self {
        Self { items: Vec::new(), table: Table::default() }
    }
}

impl<T> List<T> {
    pub fn table(&self) -> &Table {
        &self.table
    }

    pub fn table_mut(&mut self) -> &mut Table {
        &mut self.table
    }

    /// The records shown, in their order on screen.
    pub fn items(&self) -> &[T] {
        &self.items
    }

    /// One page of a list the server pages.
    pub fn apply_page(&mut self, page: Page<T>) {
        self.apply(page.items, Some(page.total));
    }

    /// A list that comes whole (roles, keys): it has no pages.
    pub fn apply_all(&mut self, items: Vec<T>) {
        self.apply(items, None);
    }

    fn apply(&mut self, items: Vec<T>, total: Option<u64>) {
        self.table.loaded(items.len(), total);
        self.items = items;
    }

    /// `None` while nothing is loaded or the list is empty.
    pub fn selected(&self) -> Option<&T> {
        self.items.get(self.table.selected())
    }

    /// What a command on the selected row asks for; nothing when no row is selected.
    pub fn on_selected(&self, act: impl FnOnce(&T) -> Outcome) -> Outcome {
        self.selected().map_or_else(Outcome::default, act)
    }

    /// The detail view of the selected record (Enter).
    pub fn details(&self, detail: impl FnOnce(&T) -> Detail) -> Outcome {
        self.on_selected(|record| Outcome::popup(Popup::Detail(detail(record))))
    }

    /// The table as drawn: titled `name` with the page count and `extra` (a search, a
    /// filter), one row of `cells` a record.
    pub fn view(
        &self,
        name: &str,
        extra: &str,
        columns: &'static [Column],
        cells: impl Fn(&T) -> Vec<String>,
    ) -> TableView {
        TableView { title: self.table.title(name, extra), columns, rows: self.items.iter().map(cells).collect() }
    }
}
