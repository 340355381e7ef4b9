//! Human-readable output: colour only where it helps (a terminal, no
//! `NO_COLOR`), and tables aligned by the display width of their cells.

use crate::args::ColorWhen;
use std::io::{IsTerminal, Write};

pub use jetway_shared::text::printable;

/// Colours used in the output.
#[derive(Debug, Clone, Copy)]
pub enum Paint {
    Dim,
    Bold,
    Cyan,
    Green,
    Yellow,
    Red,
    Magenta,
}

/// Whether to emit ANSI colour codes.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    pub colour: bool,
}

impl Style {
    /// Decides for stdout: `auto` colours only a terminal, and never when
    /// `NO_COLOR` is set (<https://no-color.org>).
    pub fn for_stdout(when: ColorWhen) -> Self {
        let colour = match when {
            ColorWhen::Always => true,
            ColorWhen::Never => false,
            ColorWhen::Auto => {
                std::io::stdout().is_terminal()
                    && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
            }
        };
        Self { colour }
    }

    /// The escape codes that start and end `paint` (empty without colour).
    pub fn codes(&self, paint: Paint) -> (&'static str, &'static str) {
        if !self.colour {
            return ("", "");
        }
        let on = match paint {
            Paint::Dim => "\x1b[2m",
            Paint::Bold => "\x1b[1m",
            Paint::Cyan => "\x1b[36m",
            Paint::Green => "\x1b[32m",
            Paint::Yellow => "\x1b[33m",
            Paint::Red => "\x1b[31m",
            Paint::Magenta => "\x1b[35m",
        };
        (on, "\x1b[0m")
    }

    /// `text` in `paint`, or unchanged without colour.
    pub fn paint(&self, paint: Paint, text: &str) -> String {
        let (on, off) = self.codes(paint);
        if text.is_empty() {
            String::new()
        } else {
            format!("{on}{text}{off}")
        }
    }

    /// `text` padded to `width` columns, then painted (padding stays outside
    /// the colour codes so alignment holds).
    pub fn pad(&self, paint: Option<Paint>, text: &str, width: usize) -> String {
        let fill = width.saturating_sub(display_width(text));
        let body = match paint {
            Some(p) => self.paint(p, text),
            None => text.to_owned(),
        };
        format!("{body}{}", " ".repeat(fill))
    }
}

/// Columns a string takes (characters; the output is ASCII plus arrows).
pub fn display_width(s: &str) -> usize {
    s.chars().count()
}

/// Truncates to `max` characters with an ellipsis.
pub fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// A table of text cells, printed with columns aligned.
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<(String, Option<Paint>)>>,
    /// Columns aligned right (numbers).
    right: Vec<usize>,
}

impl Table {
    pub fn new(header: &[&str]) -> Self {
        Self {
            header: header.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
            right: Vec::new(),
        }
    }

    /// Aligns these columns to the right.
    pub fn right_align(mut self, columns: &[usize]) -> Self {
        self.right = columns.to_vec();
        self
    }

    /// Adds a row; its cells are made [`printable`].
    pub fn row(&mut self, cells: Vec<(String, Option<Paint>)>) {
        let cells = cells
            .into_iter()
            .map(|(text, paint)| (printable(&text).into_owned(), paint))
            .collect();
        self.rows.push(cells);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Writes the header and rows, two spaces between columns.
    pub fn write(&self, out: &mut impl Write, style: &Style) -> std::io::Result<()> {
        let mut widths: Vec<usize> = self.header.iter().map(|h| display_width(h)).collect();
        for row in &self.rows {
            for (i, (cell, _)) in row.iter().enumerate() {
                if i < widths.len() {
                    widths[i] = widths[i].max(display_width(cell));
                }
            }
        }
        let header: Vec<(String, Option<Paint>)> = self
            .header
            .iter()
            .map(|h| (h.clone(), Some(Paint::Bold)))
            .collect();
        for row in std::iter::once(&header).chain(&self.rows) {
            let last = row.len().saturating_sub(1);
            let mut line = String::new();
            for (i, (cell, paint)) in row.iter().enumerate() {
                let width = widths.get(i).copied().unwrap_or(0);
                if self.right.contains(&i) {
                    let fill = width.saturating_sub(display_width(cell));
                    line.push_str(&" ".repeat(fill));
                    line.push_str(&match paint {
                        Some(p) => style.paint(*p, cell),
                        None => cell.clone(),
                    });
                } else if i == last {
                    line.push_str(&match paint {
                        Some(p) => style.paint(*p, cell),
                        None => cell.clone(),
                    });
                } else {
                    line.push_str(&style.pad(*paint, cell, width));
                }
                if i != last {
                    line.push_str("  ");
                }
            }
            writeln!(out, "{}", line.trim_end())?;
        }
        Ok(())
    }
}
