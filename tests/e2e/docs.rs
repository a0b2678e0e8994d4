//! The documentation stays true to the repository: every relative link in a Markdown file
//! resolves to a file (and heading) inside the repository, and the README's configuration
//! table lists exactly the settings the server accepts.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

use firemode_server::config::Config;

/// The repository root (the tests crate lives one level below it).
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

// ---------------------------------------------------------------------------------------------
// Links

/// Folders that hold no documentation of ours: build output, installed packages, git.
const SKIPPED_DIRS: &[&str] = &["target", "node_modules", ".git"];

fn markdown_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if path.is_dir() {
            if !SKIPPED_DIRS.contains(&name.as_str()) {
                markdown_files(&path, out);
            }
        } else if name.ends_with(".md") {
            out.push(path);
        }
    }
}

/// The text outside fenced code blocks and inline code spans, line by line (a link inside
/// code is an example, not a link).
fn prose_lines(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            out.push(String::new());
            continue;
        }
        if fenced {
            out.push(String::new());
            continue;
        }
        let mut kept = String::new();
        let mut in_code = false;
        for ch in line.chars() {
            if ch == '`' {
                in_code = !in_code;
            } else if !in_code {
                kept.push(ch);
            }
        }
        out.push(kept);
    }
    out
}

/// Link targets of a Markdown text with their line numbers: inline links and images
/// `[text](target "title")` and reference definitions `[name]: target`.
fn link_targets(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (n, line) in prose_lines(text).iter().enumerate() {
        let trimmed = line.trim_start();
        if trimmed.starts_with('[') {
            if let Some(end) = trimmed.find("]:") {
                let target = trimmed[end + 2..].split_whitespace().next().unwrap_or("");
                if !target.is_empty() {
                    out.push((n + 1, target.to_owned()));
                    continue;
                }
            }
        }
        let mut rest = line.as_str();
        while let Some(i) = rest.find("](") {
            let after = &rest[i + 2..];
            let Some(close) = after.find(')') else { break };
            let inside = after[..close].trim();
            let target = inside
                .trim_start_matches('<')
                .split(['>', ' '])
                .next()
                .unwrap_or("");
            out.push((n + 1, target.to_owned()));
            rest = &after[close..];
        }
    }
    out
}

/// GitHub's anchors for the headings of a Markdown text.
fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut out = BTreeSet::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced || !line.starts_with('#') {
            continue;
        }
        let title = line.trim_start_matches('#').trim();
        let slug: String = title
            .to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
            .map(|c| if c == ' ' { '-' } else { c })
            .collect();
        let n = seen.entry(slug.clone()).or_insert(0);
        out.insert(if *n == 0 {
            slug.clone()
        } else {
            format!("{slug}-{n}")
        });
        *n += 1;
    }
    out
}

/// `path` with `.` and `..` resolved without touching the file system; None when `..` climbs
/// above the start.
fn normalise(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    Some(out)
}

/// Every problem with the relative links of the Markdown files under `root`: dead targets,
/// targets outside `root`, absolute paths, unknown headings.
fn link_problems(root: &Path) -> Vec<String> {
    let mut files = Vec::new();
    markdown_files(root, &mut files);
    files.sort();
    let mut problems = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("markdown is UTF-8");
        let shown = file
            .strip_prefix(root)
            .unwrap_or(file)
            .display()
            .to_string();
        for (line, target) in link_targets(&text) {
            let at = format!("{shown}:{line}: {target}");
            if target.is_empty() {
                problems.push(format!("{at}: empty link"));
                continue;
            }
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let (path_part, fragment) = match target.split_once('#') {
                Some((p, f)) => (p, Some(f)),
                None => (target.as_str(), None),
            };
            if path_part.starts_with('/') {
                problems.push(format!(
                    "{at}: absolute path; use a path relative to the file"
                ));
                continue;
            }
            let resolved = if path_part.is_empty() {
                Some(file.clone())
            } else {
                normalise(&file.parent().expect("a file has a folder").join(path_part))
            };
            let Some(resolved) = resolved.filter(|p| p.starts_with(root)) else {
                problems.push(format!("{at}: points outside the repository"));
                continue;
            };
            if !resolved.exists() {
                problems.push(format!("{at}: no such file"));
                continue;
            }
            if let Some(fragment) = fragment.filter(|f| !f.is_empty()) {
                let is_markdown = resolved.extension().is_some_and(|e| e == "md");
                if is_markdown {
                    let target_text = std::fs::read_to_string(&resolved).unwrap_or_default();
                    if !anchors(&target_text).contains(fragment) {
                        problems.push(format!("{at}: no heading #{fragment}"));
                    }
                }
            }
        }
    }
    problems
}

#[test]
fn markdown_links_resolve_inside_the_repository() {
    let root = repo_root();
    let mut files = Vec::new();
    markdown_files(&root, &mut files);
    for required in [
        "README.md",
        "docs/architecture.md",
        "docs/protocol.md",
        "docs/roles.md",
        "docs/api.md",
        "docs/operations.md",
        "docs/deploy.md",
    ] {
        assert!(
            files.contains(&root.join(required)),
            "{required} is missing"
        );
    }
    let problems = link_problems(&root);
    assert!(
        problems.is_empty(),
        "dead or outside links:\n{}",
        problems.join("\n")
    );
}

/// The checker itself finds what it must: without this a checker that matched nothing would
/// pass every repository.
#[test]
fn link_checker_catches_bad_links() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let root = tmp.path().join("repo");
    std::fs::create_dir_all(root.join("docs")).unwrap();
    std::fs::write(tmp.path().join("outside.md"), "# Outside\n").unwrap();
    std::fs::write(
        root.join("docs/a.md"),
        "# Title A\n\n## Second part\n\nSee [b](b.md), [b's part](b.md#part-two), \
         [here](#second-part) and [site](https://example.com).\n\n\
         ```\n[not a link](nowhere.md)\n```\n\nAnd `[code](nowhere.md)`.\n",
    )
    .unwrap();
    std::fs::write(
        root.join("docs/b.md"),
        "# B\n\n## Part two\n\n[dead](missing.md) [up](../../outside.md) [abs](/etc/passwd)\n\
         [bad anchor](a.md#no-such-heading)\n\n[ref]: ./gone.md\n",
    )
    .unwrap();
    let problems = link_problems(&root);
    let found = |needle: &str| problems.iter().any(|p| p.contains(needle));
    assert!(
        found("docs/b.md:5: missing.md: no such file"),
        "{problems:?}"
    );
    assert!(
        found("../../outside.md: points outside the repository"),
        "{problems:?}"
    );
    assert!(found("/etc/passwd: absolute path"), "{problems:?}");
    assert!(found("a.md#no-such-heading: no heading"), "{problems:?}");
    assert!(found("./gone.md: no such file"), "{problems:?}");
    assert_eq!(problems.len(), 5, "only the bad links: {problems:?}");
}

/// Source files (code, scripts, manifests) under `dir`.
fn source_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if path.is_dir() {
            if !SKIPPED_DIRS.contains(&name.as_str()) {
                source_files(&path, out);
            }
        } else if [".rs", ".mjs", ".js", ".toml", ".json", ".sh"]
            .iter()
            .any(|ext| name.ends_with(ext))
            || name == "run"
        {
            out.push(path);
        }
    }
}

/// Comments in the code name documents too (`see docs/protocol.md`): each `docs/<name>.md`
/// must exist, and nothing may send the reader outside the repository.
#[test]
fn source_files_point_to_existing_docs() {
    let root = repo_root();
    let mut files = Vec::new();
    for dir in ["server", "sync-core", "clients", "tests", "fuzz", ".ci"] {
        source_files(&root.join(dir), &mut files);
    }
    assert!(
        files.len() > 50,
        "too few source files found: {}",
        files.len()
    );
    let outside = ["../shared", "DESIGN.md", "DOMAIN.md", "STYLE.md"];
    let mut problems = Vec::new();
    for file in &files {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        let shown = file
            .strip_prefix(&root)
            .unwrap_or(file)
            .display()
            .to_string();
        // This file names the forbidden references in order to look for them.
        if shown.ends_with("tests/e2e/docs.rs") {
            continue;
        }
        for (n, line) in text.lines().enumerate() {
            for needle in outside {
                if line.contains(needle) {
                    problems.push(format!("{shown}:{}: refers to {needle}", n + 1));
                }
            }
            let mut rest = line;
            while let Some(i) = rest.find("docs/") {
                let name: String = rest[i..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || "/._-".contains(*c))
                    .collect();
                let name = name.trim_end_matches('.');
                if name.ends_with(".md") && !root.join(name).exists() {
                    problems.push(format!("{shown}:{}: {name} does not exist", n + 1));
                }
                rest = &rest[i + 5..];
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

// ---------------------------------------------------------------------------------------------
// The README's configuration table

/// Settings named in `server/src/config.rs`: the arms of `Config::apply`'s match on the key
/// (one arm per setting), plus `data_dir`, which `Config::load` takes before the others. Read
/// from the source because the code keeps no list of them.
fn settings_in_code(source: &str) -> BTreeSet<String> {
    let start = source
        .find("fn apply(")
        .expect("config.rs has Config::apply");
    let body = &source[start..];
    let end = body
        .find("other => warnings.push")
        .expect("Config::apply warns about unknown settings");
    let body = &body[..end];
    // The settings are the arms of the outermost match; nested matches on values (log_format,
    // evidence_store) are indented further.
    let arms: Vec<(usize, &str)> = body
        .lines()
        .filter_map(|l| {
            let t = l.trim_start();
            let indent = l.len() - t.len();
            (t.starts_with('"') && t.contains("\" =>")).then_some((indent, t))
        })
        .collect();
    let outer = arms.iter().map(|(indent, _)| *indent).min().unwrap_or(0);
    let mut keys: BTreeSet<String> = arms
        .iter()
        .filter(|(indent, _)| *indent == outer)
        .map(|(_, t)| t[1..].split('"').next().unwrap_or("").to_owned())
        .collect();
    assert!(
        source.contains("raw.remove(\"data_dir\")"),
        "Config::load no longer takes data_dir first; update this test"
    );
    keys.insert("data_dir".into());
    keys
}

/// The README's configuration table: setting -> the text of its environment cell.
fn readme_settings(readme: &str) -> BTreeMap<String, String> {
    let section = readme
        .split("\n## Configuration")
        .nth(1)
        .expect("README has a Configuration section");
    let section = section.split("\n## ").next().unwrap_or(section);
    let mut rows = BTreeMap::new();
    for line in section.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // "| `key` | env | default |" splits into ["", "`key`", env, default, ""].
        if cells.len() < 4 || !cells[1].starts_with('`') {
            continue;
        }
        let key = cells[1].trim_matches('`').to_owned();
        assert!(
            !key.contains('`'),
            "one setting per row in the README table: {line}"
        );
        let previous = rows.insert(key.clone(), cells[2].to_owned());
        assert!(previous.is_none(), "{key} is listed twice in the README");
    }
    rows
}

#[test]
fn readme_configuration_table_matches_the_code() {
    let root = repo_root();
    let source = std::fs::read_to_string(root.join("server/src/config.rs")).expect("config.rs");
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    let code = settings_in_code(&source);
    assert!(
        code.contains("listen") && code.contains("evidence_s3_bucket") && code.len() >= 20,
        "the settings parser found too little in config.rs: {code:?}"
    );
    let table = readme_settings(&readme);
    let documented: BTreeSet<String> = table.keys().cloned().collect();
    let missing: Vec<_> = code.difference(&documented).collect();
    let unknown: Vec<_> = documented.difference(&code).collect();
    assert!(
        missing.is_empty() && unknown.is_empty(),
        "README configuration table: missing settings {missing:?}, settings the code does not know {unknown:?}"
    );

    for (key, env_cell) in &table {
        // Every setting can come from the environment as FIREMODE_<KEY>.
        let var = format!("FIREMODE_{}", key.to_ascii_uppercase());
        assert!(
            env_cell.contains(&format!("`{var}`")),
            "README: the row of {key} should name `{var}` (it has: {env_cell})"
        );
        // And the loader takes it: a known setting either loads or fails on its value, while
        // an unknown one only warns.
        let env = BTreeMap::from([(var.clone(), "1".to_owned())]);
        if let Ok(cfg) = Config::load(None, &env, &BTreeMap::new()) {
            assert!(
                !cfg.warnings.iter().any(|w| w.contains("unknown setting")),
                "{var} is documented but the server ignores it: {:?}",
                cfg.warnings
            );
        }
    }
    // The parser is not fooled by a setting the code does not have: the loader warns.
    let env = BTreeMap::from([("FIREMODE_NO_SUCH_SETTING".to_owned(), "1".to_owned())]);
    let cfg = Config::load(None, &env, &BTreeMap::new()).expect("an unknown setting only warns");
    assert!(cfg
        .warnings
        .iter()
        .any(|w| w.contains("unknown setting 'no_such_setting'")));
}

// ---------------------------------------------------------------------------------------------
// The API guide's walkthrough, run as written

/// The shell blocks of a Markdown text, in order, each with the line its first command is on.
fn shell_blocks(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut block: Option<(usize, String)> = None;
    for (n, line) in text.lines().enumerate() {
        let fence = line.trim_start().starts_with("```");
        match &mut block {
            Some(_) if fence => out.extend(block.take()),
            Some((_, body)) => {
                body.push_str(line);
                body.push('\n');
            }
            None if fence && line.trim_start().trim_start_matches('`').trim() == "sh" => {
                block = Some((n + 2, String::new()));
            }
            None => {}
        }
    }
    out
}

#[test]
fn shell_blocks_are_found_in_order() {
    let text = "intro\n```sh\na=1\n```\n```json\n{}\n```\n  ```sh\necho $a\n```\n";
    assert_eq!(
        shell_blocks(text),
        vec![(3, "a=1\n".to_owned()), (9, "echo $a\n".to_owned())]
    );
}

/// docs/api.md's walkthrough, every `sh` block in order in one shell, against the real binary:
/// the commands as written, with only what the reader has to supply substituted (the server's
/// address for `127.0.0.1:8080`, the built binaries for `cargo run` and `firemode-cli`, a
/// photo for `gauge.jpg`, and on PostgreSQL the database and secrets in the environment, as
/// the guide says). Every `curl` runs with `--fail-with-body`, so an answer of 400 or more
/// stops the walkthrough, naming the guide's line.
async fn api_guide_walkthrough(b: firemode_tests::Backend) {
    use firemode_tests::process::Proc;
    const SERVER: &str = env!("CARGO_BIN_EXE_firemode-e2e-server");
    const CLI: &str = env!("CARGO_BIN_EXE_firemode-e2e-cli");
    let Some(db) = firemode_tests::TestDb::new(b).await else {
        return;
    };
    let guide = std::fs::read_to_string(repo_root().join("docs/api.md")).expect("docs/api.md");
    let blocks = shell_blocks(&guide);
    let work = db.dir.path().to_owned();
    let data = work.join("data");
    let data_s = data.to_str().unwrap().to_owned();
    let mut env: Vec<(String, String)> = vec![("FIREMODE_LOG_FORMAT".into(), "json".into())];
    if b == firemode_tests::Backend::Postgres {
        env.push(("DATABASE_URL".into(), db.raw_url()));
        env.push((
            "FIREMODE_JWT_SECRET".into(),
            firemode_server::crypto::random_b64(48),
        ));
        env.push((
            "FIREMODE_PII_KEYS".into(),
            format!("1:{}", firemode_server::crypto::random_b64(32)),
        ));
    }
    let env_ref: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    // The guide's `serve` (block 1), on a free port instead of 8080.
    let srv = Proc::spawn(
        SERVER,
        &["serve", "--listen", "127.0.0.1:0", "--data-dir", &data_s],
        &env_ref,
    );
    std::fs::write(work.join("gauge.jpg"), crate::evidence::jpeg(4096, 7)).unwrap();

    let mut script = String::from(
        "set -eEuo pipefail\n\
         curl() { command curl --fail-with-body --max-time 60 \"$@\"; }\n\
         command -v uuidgen >/dev/null || uuidgen() { cat /proc/sys/kernel/random/uuid; }\n",
    );
    script.push_str(&format!(
        "firemode-cli() {{ '{CLI}' --config-dir \"$PWD/cli-config\" \"$@\"; }}\n\
         trap 'echo \"docs/api.md, the block at line $GUIDE_LINE: failed: $BASH_COMMAND\" >&2' ERR\n"
    ));
    let mut run = 0;
    for (line, body) in &blocks {
        if body.contains("-- serve") {
            continue;
        }
        let body = body
            .replace(
                "cargo run --release -q -p firemode-server --",
                &format!("'{SERVER}'"),
            )
            .replace("http://127.0.0.1:8080", &srv.base);
        script.push_str(&format!(
            "GUIDE_LINE={line}\necho \"--- docs/api.md:{line}\" >&2\n{body}\n"
        ));
        run += 1;
    }
    script.push_str("echo 'walkthrough complete' >&2\n");
    assert!(run >= 20, "only {run} shell blocks found in docs/api.md");
    let mut cmd = tokio::process::Command::new("bash");
    cmd.arg("-c")
        .arg(&script)
        .current_dir(&work)
        .env("HOME", &work)
        .env_remove("DATABASE_URL")
        .env_remove("FIREMODE_PASSWORD")
        .env_remove("XDG_CONFIG_HOME")
        .stdin(std::process::Stdio::null());
    for (k, v) in &env {
        cmd.env(k, v);
    }
    let out = tokio::time::timeout(std::time::Duration::from_secs(300), cmd.output())
        .await
        .expect("the walkthrough finished within 5 minutes")
        .expect("run bash");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let tail = |s: &str| {
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    };
    assert!(
        out.status.success() && stderr.contains("walkthrough complete"),
        "the API guide's walkthrough failed ({}):\n--- stderr\n{}\n--- stdout (end)\n{}\n--- server log (end)\n{}",
        out.status,
        tail(&stderr),
        tail(&stdout),
        tail(&srv.output())
    );
    eprintln!("docs/api.md walkthrough ({b:?}): {run} shell blocks ran as written");
    let (status, _) = srv.terminate();
    assert!(status.success());
}

firemode_tests::backend_tests!(api_guide_walkthrough);
