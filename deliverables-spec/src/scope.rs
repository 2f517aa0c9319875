//! A job's spec text cut into the part every title shares and one part per
//! title, so a worker is sent only the text of the title it renders.
//!
//! The rule: `header + "\n" + titles[i]` ([`ScopedSpec::title_text`]) is a
//! spec text with every section but `titles` as the job wrote it (comments
//! and layout kept) and exactly the job's title `i`. Titles are the one
//! title-bearing key of a spec ([`crate::model::Spec::titles`]), written as
//! `[[titles]]` tables or as an inline array `titles = [{ ... }]`; both come
//! out as one `[[titles]]` table, which is valid after any header section.

use toml_edit::{ArrayOfTables, DocumentMut, Item, Table, Value};

/// A spec text split by title.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopedSpec {
    /// Every section but `titles`.
    pub header: String,
    /// One `[[titles]]` table per title, in the job's order.
    pub titles: Vec<String>,
}

impl ScopedSpec {
    /// The spec text of title `i` alone (`None` past the last title).
    pub fn title_text(&self, i: usize) -> Option<String> {
        self.titles
            .get(i)
            .map(|t| format!("{}\n{}", self.header, t))
    }
}

/// Splits spec text into its header and one text per title. Only the TOML
/// shape is checked here; the scoped texts are parsed and validated by
/// [`crate::load_scoped`].
pub fn split_titles(text: &str) -> Result<ScopedSpec, String> {
    let mut doc: DocumentMut = text
        .parse()
        .map_err(|e| format!("the spec is not valid TOML: {e}"))?;
    let tables: Vec<Table> = match doc.remove("titles") {
        None => Vec::new(),
        Some(Item::ArrayOfTables(a)) => a.into_iter().collect(),
        Some(Item::Value(Value::Array(a))) => a
            .into_iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::InlineTable(t) => Ok(t.into_table()),
                other => Err(format!(
                    "titles[{i}] must be a table; found: {}",
                    other.type_name()
                )),
            })
            .collect::<Result<_, _>>()?,
        Some(other) => {
            return Err(format!(
                "`titles` must be a list of tables; found: {}",
                other.type_name()
            ));
        }
    };
    let titles = tables
        .into_iter()
        .map(|t| {
            let mut one = ArrayOfTables::new();
            one.push(t);
            let mut d = DocumentMut::new();
            d.insert("titles", Item::ArrayOfTables(one));
            d.to_string()
        })
        .collect();
    Ok(ScopedSpec {
        header: doc.to_string(),
        titles,
    })
}
