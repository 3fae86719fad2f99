//! Migration classes: each operation of a schema migration, read from its file, is classed
//! **expand** (the version before it still works on the migrated schema: a new table, a nullable
//! column, a column with a default, an index) or **contract** (the version before it breaks: a
//! column or table dropped or renamed, `NOT NULL` without a default, a type changed).
//!
//! Read without running anything: Alembic and Django (Python), Rails (Ruby), Knex (JavaScript or
//! TypeScript) and plain SQL (Prisma's `migration.sql` among them). Only the forward half of a
//! migration is read: Alembic's `downgrade()`, Rails' `def down`, Knex's `down` and a SQL file's
//! `-- migrate:down` / `-- +goose Down` section undo what the forward half did, and say nothing
//! of what it does. What the reader does not recognise is not classed: an external linter
//! (`gate.migration_lint`) can add its own judgement.

use serde::Serialize;

/// The language a migration file is written in, from its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Dialect {
    Alembic,
    Django,
    Rails,
    Knex,
    Sql,
}

/// Where the conventional tools keep their migrations (globs relative to the gate's dir).
pub const DEFAULT_GLOBS: &[&str] = &[
    "**/versions/*.py",
    "**/migrations/*.py",
    "**/db/migrate/*.rb",
    "**/migrations/*.js",
    "**/migrations/*.ts",
    "**/migrations/*.cjs",
    "**/migrations/*.mjs",
    "**/migrations/**/*.sql",
];

/// The dialect of a migration file, by its path: `None` for what is no migration (a package's
/// `__init__.py`, Alembic's `env.py`).
pub fn dialect_of(path: &str) -> Option<Dialect> {
    let name = path.rsplit('/').next().unwrap_or(path);
    let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()).unwrap_or_default();
    if name == "__init__.py" || name == "env.py" {
        return None;
    }
    match ext.as_str() {
        "sql" => Some(Dialect::Sql),
        "rb" => Some(Dialect::Rails),
        "js" | "ts" | "cjs" | "mjs" => Some(Dialect::Knex),
        // Alembic keeps revisions under versions/; Django's migrations/ hold numbered modules.
        "py" if path.contains("versions/") => Some(Dialect::Alembic),
        "py" => Some(Dialect::Django),
        _ => None,
    }
}

/// The migrator a web command runs before the server, if it runs one (`flask db upgrade;
/// gunicorn ...`): it would change the shared data as each new version starts, beside the one
/// users are served and before any check.
pub fn migrator_in(command: &str) -> Option<&'static str> {
    const MIGRATORS: &[&str] = &[
        "flask db upgrade",
        "alembic upgrade",
        "manage.py migrate",
        "django-admin migrate",
        "rails db:migrate",
        "rake db:migrate",
        "prisma migrate deploy",
        "knex migrate:latest",
        "sequelize db:migrate",
        "sequelize-cli db:migrate",
        "typeorm migration:run",
        "goose up",
        "dbmate up",
        "db-migrate up",
    ];
    // Each command of the line apart (`a && b; c | d`); a migrator's words appear in order in
    // one of them, options between them allowed (`flask --app blog db upgrade`), its program
    // by the end of its path (`./manage.py`).
    command.split([';', '&', '|', '\n']).find_map(|part| {
        let tokens: Vec<&str> = part.split_whitespace().collect();
        MIGRATORS.iter().copied().find(|m| {
            let mut rest = tokens.iter();
            m.split(' ').all(|word| rest.any(|t| *t == word || t.ends_with(&format!("/{word}"))))
        })
    })
}

/// The advice for a web command that runs a migrator.
pub fn migrator_advice(migrator: &str, from: &str) -> String {
    format!(
        "{from} runs a migrator (`{migrator}`): each new version would migrate the shared data as it starts, beside the version users are served and before any check; move it to a `release:` line in the Procfile (or deploy.release), which runs once per environment before the version starts, with its own verdict"
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    Expand,
    Contract,
}

/// One operation of a migration, where it is and what it does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Op {
    /// 1-based line of the operation's first line.
    pub line: usize,
    /// The operation as written, on one line, clipped.
    pub text: String,
    pub class: Class,
    /// What it does, in words ("drops a column").
    pub what: &'static str,
}

/// The operations of a migration's forward half, in file order.
pub fn classify(dialect: Dialect, text: &str) -> Vec<Op> {
    let lines: Vec<&str> = text.lines().collect();
    let forward = forward_lines(dialect, &lines);
    match dialect {
        Dialect::Sql => sql_ops(&lines, &forward),
        _ => call_ops(dialect, &lines, &forward),
    }
}

/// Which lines belong to the forward half.
fn forward_lines(dialect: Dialect, lines: &[&str]) -> Vec<bool> {
    let mut forward = true;
    let mut out = Vec::with_capacity(lines.len());
    let mut down_indent: Option<usize> = None;
    for l in lines {
        let t = l.trim();
        let indent = l.len() - l.trim_start().len();
        match dialect {
            Dialect::Alembic => {
                // Top-level functions: upgrade() forward, downgrade() not, anything else as is.
                if indent == 0 && t.starts_with("def ") {
                    forward = !t.starts_with("def downgrade");
                }
            }
            Dialect::Rails => {
                if let Some(d) = down_indent {
                    if indent <= d && t == "end" {
                        down_indent = None;
                        out.push(false);
                        continue;
                    }
                } else if t.starts_with("def down") {
                    down_indent = Some(indent);
                }
                forward = down_indent.is_none();
            }
            Dialect::Knex => {
                if t.contains("exports.down") || t.contains("function down") || t.starts_with("down:") {
                    forward = false;
                } else if t.contains("exports.up") || t.contains("function up") || t.starts_with("up:") {
                    forward = true;
                }
            }
            Dialect::Sql => {
                let lower = t.to_ascii_lowercase();
                if lower.starts_with("-- migrate:down") || lower.starts_with("-- +goose down") {
                    forward = false;
                } else if lower.starts_with("-- migrate:up") || lower.starts_with("-- +goose up") {
                    forward = true;
                }
            }
            Dialect::Django => {}
        }
        out.push(forward);
    }
    out
}

/// The text of a call that starts on line `i`, to its closing parenthesis (or the end of the
/// line when it has none), joined on one line; comments are left out.
fn call_text(lines: &[&str], i: usize, from: usize) -> String {
    let mut depth = 0i32;
    let mut text = String::new();
    let mut opened = false;
    for (n, l) in lines.iter().enumerate().skip(i).take(40) {
        let l = if n == i { &l[from..] } else { l };
        let l = strip_comment(l);
        for c in l.chars() {
            match c {
                '(' => {
                    depth += 1;
                    opened = true;
                }
                ')' => depth -= 1,
                _ => {}
            }
        }
        if !text.is_empty() {
            text.push(' ');
        }
        text.push_str(l.trim());
        if !opened || depth <= 0 {
            break;
        }
    }
    text
}

fn strip_comment(l: &str) -> &str {
    let t = l.trim_start();
    if t.starts_with('#') || t.starts_with("//") || t.starts_with("--") { "" } else { l }
}

/// Whether `text` holds `needle` with only spaces around its `=` or `:` (`nullable=False`,
/// `null: false`, `nullable = False`).
fn has_arg(text: &str, key: &str, value: &str) -> bool {
    let squeezed: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    [format!("{key}={value}"), format!("{key}:{value}")].iter().any(|n| squeezed.contains(n.as_str()))
}

/// The migration calls of Alembic, Django, Rails and Knex files.
fn call_ops(dialect: Dialect, lines: &[&str], forward: &[bool]) -> Vec<Op> {
    let mut ops = vec![];
    for (i, l) in lines.iter().enumerate() {
        if !forward[i] || strip_comment(l).trim().is_empty() {
            continue;
        }
        let Some((at, name)) = call_name(dialect, l) else { continue };
        let text = call_text(lines, i, at);
        let Some((class, what)) = class_of_call(dialect, name, &text) else { continue };
        ops.push(Op { line: i + 1, text: clip(&text), class, what });
    }
    ops
}

/// The first migration call on a line: where it starts and its name.
fn call_name(dialect: Dialect, line: &str) -> Option<(usize, &str)> {
    let prefixes: &[&str] = match dialect {
        Dialect::Alembic => &["op.", "batch_op."],
        Dialect::Django => &["migrations."],
        Dialect::Knex => &["."],
        Dialect::Rails => &[""],
        Dialect::Sql => return None,
    };
    for p in prefixes {
        let mut from = 0;
        while let Some(found) = line[from..].find(p).map(|f| f + from) {
            let start = found + p.len();
            let name_len =
                line[start..].find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(line.len() - start);
            let name = &line[start..start + name_len];
            let before_ok = dialect != Dialect::Rails
                || line[..found].trim().is_empty()
                || line[..found].trim_end().ends_with(['.', '|', '{']);
            let after = line[start + name_len..].chars().next();
            let called = matches!(after, Some('(') | Some(' ') | None) && !name.is_empty();
            if before_ok && called && known_call(dialect, name) {
                return Some((found, name));
            }
            from = start.max(found + 1);
            if from >= line.len() {
                break;
            }
        }
    }
    None
}

fn known_call(dialect: Dialect, name: &str) -> bool {
    let known: &[&str] = match dialect {
        Dialect::Alembic => &[
            "add_column",
            "drop_column",
            "alter_column",
            "create_table",
            "drop_table",
            "rename_table",
            "create_index",
            "drop_index",
            "create_foreign_key",
            "create_unique_constraint",
            "drop_constraint",
            "execute",
        ],
        Dialect::Django => &[
            "AddField",
            "RemoveField",
            "AlterField",
            "RenameField",
            "CreateModel",
            "DeleteModel",
            "RenameModel",
            "AddIndex",
            "RemoveIndex",
            "AddConstraint",
            "RemoveConstraint",
            "RunSQL",
            "AlterModelTable",
        ],
        Dialect::Rails => &[
            "add_column",
            "remove_column",
            "remove_columns",
            "rename_column",
            "change_column",
            "change_column_null",
            "create_table",
            "drop_table",
            "rename_table",
            "add_index",
            "remove_index",
            "add_reference",
            "remove_reference",
            "execute",
        ],
        Dialect::Knex => &[
            "dropColumn",
            "dropColumns",
            "renameColumn",
            "dropTable",
            "dropTableIfExists",
            "renameTable",
            "alterTable",
            "createTable",
            "notNullable",
            "alter",
            "raw",
        ],
        Dialect::Sql => &[],
    };
    known.contains(&name)
}

/// The class of one call, and what it does; `None` for what changes no schema the old version
/// reads (a Knex `alterTable(` wrapper, say).
fn class_of_call(dialect: Dialect, name: &str, text: &str) -> Option<(Class, &'static str)> {
    use Class::{Contract, Expand};
    let no_default = |t: &str| !["server_default", "default", "db_default", "defaultTo"].iter().any(|d| t.contains(d));
    Some(match (dialect, name) {
        (Dialect::Alembic, "drop_column") | (Dialect::Rails, "remove_column" | "remove_columns") => {
            (Contract, "drops a column")
        }
        (Dialect::Alembic, "drop_table") | (Dialect::Rails, "drop_table") => (Contract, "drops a table"),
        (Dialect::Alembic, "rename_table") | (Dialect::Rails, "rename_table") => (Contract, "renames a table"),
        (Dialect::Alembic, "alter_column") => {
            if text.contains("new_column_name") {
                (Contract, "renames a column")
            } else if text.contains("type_") {
                (Contract, "changes a column's type")
            } else if has_arg(text, "nullable", "False") && no_default(text) {
                (Contract, "sets NOT NULL without a default")
            } else {
                (Expand, "alters a column")
            }
        }
        (Dialect::Alembic, "add_column") | (Dialect::Rails, "add_column") => {
            let not_null = has_arg(text, "nullable", "False") || has_arg(text, "null", "false");
            if not_null && no_default(text) {
                (Contract, "adds a NOT NULL column without a default")
            } else {
                (Expand, "adds a column")
            }
        }
        (Dialect::Alembic | Dialect::Rails, "execute") | (Dialect::Django, "RunSQL") | (Dialect::Knex, "raw") => {
            let sql = quoted(text);
            match sql_class(&sql.to_ascii_uppercase()) {
                Some((Contract, what)) => (Contract, what),
                _ => (Expand, "runs SQL"),
            }
        }
        (Dialect::Rails, "rename_column") | (Dialect::Django, "RenameField") | (Dialect::Knex, "renameColumn") => {
            (Contract, "renames a column")
        }
        (Dialect::Rails, "change_column") => (Contract, "changes a column's type"),
        (Dialect::Rails, "change_column_null") => {
            if text.contains("false") {
                (Contract, "sets NOT NULL")
            } else {
                (Expand, "allows NULL")
            }
        }
        (Dialect::Rails, "remove_reference") => (Contract, "drops a reference column"),
        (Dialect::Django, "RemoveField") | (Dialect::Knex, "dropColumn" | "dropColumns") => {
            (Contract, "drops a column")
        }
        (Dialect::Django, "DeleteModel") | (Dialect::Knex, "dropTable" | "dropTableIfExists") => {
            (Contract, "drops a table")
        }
        (Dialect::Django, "RenameModel" | "AlterModelTable") | (Dialect::Knex, "renameTable") => {
            (Contract, "renames a table")
        }
        (Dialect::Django, "AlterField") => {
            if has_arg(text, "null", "True") {
                (Expand, "alters a field")
            } else {
                (Contract, "alters a field's type or NULL rule")
            }
        }
        (Dialect::Django, "AddField") => {
            // Django keeps no database default for `default=`: the old version's INSERTs fail.
            if has_arg(text, "null", "True") || text.contains("db_default") {
                (Expand, "adds a field")
            } else {
                (Contract, "adds a NOT NULL field without a database default")
            }
        }
        (Dialect::Knex, "notNullable") => {
            if text.contains("defaultTo") {
                (Expand, "adds a column with a default")
            } else {
                (Contract, "sets NOT NULL without a default")
            }
        }
        (Dialect::Knex, "alter") => (Contract, "changes a column's type"),
        (Dialect::Knex, "alterTable" | "createTable") => return None,
        _ => (Expand, "adds to the schema"),
    })
}

/// The text inside the quotes of a call (a SQL statement passed to `op.execute(...)`).
fn quoted(text: &str) -> String {
    let mut out = String::new();
    let mut quote: Option<char> = None;
    for c in text.chars() {
        match quote {
            Some(q) if c == q => {
                quote = None;
                out.push(' ');
            }
            Some(_) => out.push(c),
            None if matches!(c, '"' | '\'' | '`') => quote = Some(c),
            None => {}
        }
    }
    out
}

/// The SQL statements of a file's forward half, each classed.
fn sql_ops(lines: &[&str], forward: &[bool]) -> Vec<Op> {
    let mut ops = vec![];
    let mut stmt = String::new();
    let mut first = 0;
    for (i, l) in lines.iter().enumerate() {
        let code = l.split("--").next().unwrap_or_default();
        if !forward[i] || code.trim().is_empty() {
            continue;
        }
        if stmt.trim().is_empty() {
            first = i + 1;
            stmt.clear();
        }
        for c in code.chars() {
            if c == ';' {
                push_sql(&mut ops, first, &stmt);
                stmt.clear();
                first = i + 1;
            } else {
                stmt.push(c);
            }
        }
        stmt.push(' ');
    }
    push_sql(&mut ops, first, &stmt);
    ops
}

fn push_sql(ops: &mut Vec<Op>, line: usize, stmt: &str) {
    let text: String = stmt.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.is_empty() {
        return;
    }
    let (class, what) = sql_class(&text.to_ascii_uppercase()).unwrap_or((Class::Expand, "changes the schema"));
    ops.push(Op { line, text: clip(&text), class, what });
}

/// The class of one SQL statement (upper-cased, on one line); `None` when it is no schema change.
fn sql_class(s: &str) -> Option<(Class, &'static str)> {
    use Class::{Contract, Expand};
    let s: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    let has = |n: &str| s.contains(n);
    Some(if has("DROP TABLE") {
        (Contract, "drops a table")
    } else if has("DROP COLUMN")
        || (s.starts_with("ALTER TABLE")
            && has(" DROP ")
            && !has("DROP CONSTRAINT")
            && !has("DROP DEFAULT")
            && !has("DROP NOT NULL")
            && !has("DROP INDEX"))
    {
        (Contract, "drops a column")
    } else if has("RENAME COLUMN") || (s.starts_with("ALTER TABLE") && has(" RENAME ") && !has("RENAME TO")) {
        (Contract, "renames a column")
    } else if has("RENAME TO") {
        (Contract, "renames a table")
    } else if has(" TYPE ") && has("ALTER COLUMN") || has("SET DATA TYPE") || has("MODIFY COLUMN") {
        (Contract, "changes a column's type")
    } else if has("SET NOT NULL") {
        (Contract, "sets NOT NULL")
    } else if has("ADD COLUMN") || (s.starts_with("ALTER TABLE") && has(" ADD ") && !has("CONSTRAINT") && !has("INDEX"))
    {
        if has("NOT NULL") && !has("DEFAULT") {
            (Contract, "adds a NOT NULL column without a default")
        } else {
            (Expand, "adds a column")
        }
    } else if s.starts_with("CREATE") {
        (Expand, "creates")
    } else if s.starts_with("ALTER") || s.starts_with("DROP") {
        (Expand, "changes the schema")
    } else {
        return None;
    })
}

fn clip(text: &str) -> String {
    let t = text.trim();
    if t.chars().count() <= 160 { t.to_string() } else { format!("{}…", t.chars().take(160).collect::<String>()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contract(d: Dialect, text: &str) -> Vec<(usize, &'static str)> {
        classify(d, text).into_iter().filter(|o| o.class == Class::Contract).map(|o| (o.line, o.what)).collect()
    }

    #[test]
    fn a_migrator_in_the_web_line_is_named() {
        let rows = [
            ("flask db upgrade; flask translate compile; gunicorn app:app", Some("flask db upgrade")),
            ("flask --app blog db upgrade && exec gunicorn app:app", Some("flask db upgrade")),
            ("./manage.py migrate --noinput; gunicorn site.wsgi", Some("manage.py migrate")),
            ("flask db-tools; echo upgrade", None),
            ("python manage.py  migrate && gunicorn site.wsgi", Some("manage.py migrate")),
            ("bundle exec rails db:migrate && bundle exec puma", Some("rails db:migrate")),
            ("npx prisma migrate deploy && node server.js", Some("prisma migrate deploy")),
            ("gunicorn --bind 127.0.0.1:$PORT application:app", None),
            ("", None),
        ];
        for (line, want) in rows {
            assert_eq!(migrator_in(line), want, "{line}");
        }
    }

    #[test]
    fn dialects_by_path() {
        let rows = [
            ("migrations/versions/3f2a_rename.py", Some(Dialect::Alembic)),
            ("app/migrations/0002_remove_body.py", Some(Dialect::Django)),
            ("app/migrations/__init__.py", None),
            ("migrations/env.py", None),
            ("db/migrate/20260101_drop.rb", Some(Dialect::Rails)),
            ("migrations/20260101_users.js", Some(Dialect::Knex)),
            ("prisma/migrations/2026_init/migration.sql", Some(Dialect::Sql)),
            ("README.md", None),
        ];
        for (path, want) in rows {
            assert_eq!(dialect_of(path), want, "{path}");
        }
    }

    #[test]
    fn alembic_forward_half_only() {
        let additive = "def upgrade():\n    op.add_column('post', sa.Column('tags', sa.String(), nullable=True))\n    op.create_index('ix_tags', 'post', ['tags'])\n\n\ndef downgrade():\n    op.drop_index('ix_tags')\n    op.drop_column('post', 'tags')\n";
        assert_eq!(contract(Dialect::Alembic, additive), vec![], "a downgrade's drop is no contract");
        assert_eq!(classify(Dialect::Alembic, additive).len(), 2);
        let rename = "def upgrade():\n    with op.batch_alter_table('post') as batch_op:\n        batch_op.alter_column(\n            'body',\n            new_column_name='content')\n\ndef downgrade():\n    pass\n";
        assert_eq!(contract(Dialect::Alembic, rename), vec![(3, "renames a column")]);
        let rows = [
            ("op.drop_column('post', 'body')", Some("drops a column")),
            ("op.drop_table('post')", Some("drops a table")),
            ("op.rename_table('post', 'article')", Some("renames a table")),
            ("op.alter_column('post', 'n', type_=sa.BigInteger())", Some("changes a column's type")),
            ("op.alter_column('post', 'n', nullable=False)", Some("sets NOT NULL without a default")),
            ("op.alter_column('post', 'n', nullable = False, server_default='0')", None),
            (
                "op.add_column('post', sa.Column('n', sa.Integer(), nullable=False))",
                Some("adds a NOT NULL column without a default"),
            ),
            ("op.add_column('post', sa.Column('n', sa.Integer(), nullable=False, server_default='0'))", None),
            ("op.execute('ALTER TABLE post DROP COLUMN body')", Some("drops a column")),
            ("op.execute('UPDATE post SET n = 0')", None),
            ("# op.drop_column('post', 'body')", None),
        ];
        for (call, want) in rows {
            let text = format!("def upgrade():\n    {call}\n");
            assert_eq!(contract(Dialect::Alembic, &text).first().map(|c| c.1), want, "{call}");
        }
    }

    #[test]
    fn django_rails_knex_and_sql() {
        let django = "class Migration(migrations.Migration):\n    operations = [\n        migrations.RemoveField(model_name='post', name='body'),\n        migrations.AddField(model_name='post', name='tags', field=models.TextField(null=True)),\n        migrations.AddField(model_name='post', name='n', field=models.IntegerField(default=0)),\n        migrations.RenameField('post', 'a', 'b'),\n    ]\n";
        assert_eq!(
            contract(Dialect::Django, django),
            vec![
                (3, "drops a column"),
                (5, "adds a NOT NULL field without a database default"),
                (6, "renames a column")
            ]
        );
        let rails = "class Drop < ActiveRecord::Migration[7.1]\n  def up\n    add_column :posts, :tags, :string\n    remove_column :posts, :body\n  end\n\n  def down\n    add_column :posts, :body, :text, null: false\n    remove_column :posts, :tags\n  end\nend\n";
        assert_eq!(contract(Dialect::Rails, rails), vec![(4, "drops a column")]);
        let rails_null = "def change\n  change_column_null :posts, :title, false\n  add_column :posts, :n, :integer, null: false, default: 0\nend\n";
        assert_eq!(contract(Dialect::Rails, rails_null), vec![(2, "sets NOT NULL")]);
        let knex = "exports.up = function (knex) {\n  return knex.schema.alterTable('posts', (t) => {\n    t.renameColumn('body', 'content');\n    t.string('tags');\n  });\n};\nexports.down = function (knex) {\n  return knex.schema.alterTable('posts', (t) => { t.dropColumn('tags'); });\n};\n";
        assert_eq!(contract(Dialect::Knex, knex), vec![(3, "renames a column")]);
        let sql = "-- migrate:up\nALTER TABLE post ADD COLUMN tags text;\nCREATE INDEX ix ON post(tags);\nALTER TABLE post\n  RENAME COLUMN body TO content;\nALTER TABLE post ALTER COLUMN n SET NOT NULL;\nALTER TABLE post ADD COLUMN m int NOT NULL DEFAULT 0;\nALTER TABLE post ADD COLUMN k int NOT NULL;\n-- migrate:down\nALTER TABLE post DROP COLUMN tags;\n";
        assert_eq!(
            contract(Dialect::Sql, sql),
            vec![(4, "renames a column"), (6, "sets NOT NULL"), (8, "adds a NOT NULL column without a default")]
        );
        assert_eq!(contract(Dialect::Sql, "DROP TABLE post;"), vec![(1, "drops a table")]);
        assert_eq!(
            contract(Dialect::Sql, "ALTER TABLE post ALTER COLUMN n TYPE bigint;"),
            vec![(1, "changes a column's type")]
        );
        assert_eq!(contract(Dialect::Sql, ""), vec![]);
    }
}
