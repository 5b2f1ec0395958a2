//! The layering rules of the code, checked on its sources: the vendor client knows nothing of
//! Kubernetes, the simulator shares no code with the client (it is the client's oracle), the
//! planner does no I/O and reads no clock, nothing below the cluster wiring (`run`) imports it,
//! and no two modules import each other: every arrow points down.

use std::path::Path;

/// Every `.rs` file under `dir`, with its text, comment lines left out.
fn sources(dir: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join(dir)];
    while let Some(path) = stack.pop() {
        if path.is_dir() {
            for entry in std::fs::read_dir(&path).unwrap() {
                stack.push(entry.unwrap().path());
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).unwrap();
            let code: String = text
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .collect::<Vec<_>>()
                .join("\n");
            out.push((path.display().to_string(), code));
        }
    }
    assert!(!out.is_empty(), "no sources under {dir}");
    out
}

fn refuse(dir: &str, forbidden: &[&str], why: &str) {
    for (file, code) in sources(dir) {
        for word in forbidden {
            assert!(!code.contains(word), "{file} uses {word}: {why}");
        }
    }
}

#[test]
fn the_vendor_client_knows_nothing_of_kubernetes() {
    refuse(
        "src/koophone",
        &[
            "k8s_openapi",
            "kube::",
            "crate::api",
            "crate::plan",
            "crate::reconciler",
            "crate::run",
        ],
        "the vendor layer is reusable without a cluster",
    );
}

#[test]
fn the_simulator_shares_no_code_with_the_client() {
    refuse(
        "src/sim",
        &["crate::koophone", "crate::reconciler", "crate::plan"],
        "the simulator is the client's independent oracle",
    );
}

#[test]
fn the_planner_does_no_io_and_reads_no_clock() {
    const IMPURE: [&str; 6] = [
        "tokio",
        "reqwest",
        "kube::",
        "Timestamp::now",
        "Instant::now",
        "SystemTime",
    ];
    refuse(
        "src/plan",
        &IMPURE,
        "the planner is pure: the tick passes `now` in",
    );
}

/// One module of the library: its path below `crate` (empty for `lib.rs`; `a/mod.rs` and `a.rs`
/// are `a`), its file, and its code as tokens, without comments, literals and `#[cfg(test)]` items.
struct Module {
    path: Vec<String>,
    file: String,
    tokens: Vec<String>,
    /// Each name a `use` of this module binds (re-exports and private imports alike), with the
    /// whole path it stands for (`crate::...` for the library's own; anything else is outside).
    names: std::collections::BTreeMap<String, Vec<String>>,
    /// The modules of its `use ...::*`, made whole, and as written.
    globs: Vec<(Vec<String>, String)>,
    /// Every `crate::`, `super::` and `self::` path it names, and every `use` path: made whole,
    /// and as written.
    paths: Vec<(Vec<String>, String)>,
}

/// `text` without comments, and with every string and character literal emptied (a `{` or a
/// `crate::` inside one is not code).
fn strip(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let at = |i: usize| chars.get(i).copied().unwrap_or('\0');
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '/' && at(i + 1) == '/' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && at(i + 1) == '*' {
            let mut depth = 0;
            while i < chars.len() {
                if at(i) == '/' && at(i + 1) == '*' {
                    depth += 1;
                    i += 2;
                } else if at(i) == '*' && at(i + 1) == '/' {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            out.push(' ');
        } else if c == 'r'
            && (i == 0 || !ident(at(i - 1)) || (at(i - 1) == 'b' && (i == 1 || !ident(at(i - 2)))))
            && matches!(at(i + 1), '"' | '#')
        {
            // A raw string: r"...", r#"..."#, br"...".
            let hashes = (i + 1..).take_while(|&j| at(j) == '#').count();
            if at(i + 1 + hashes) != '"' {
                out.push(c);
                i += 1;
                continue;
            }
            let close: String = std::iter::once('"')
                .chain("#".repeat(hashes).chars())
                .collect();
            let body = i + 2 + hashes;
            let rest: String = chars[body..].iter().collect();
            let end = rest.find(&close).expect("a raw string ends");
            i = body + rest[..end].chars().count() + close.chars().count();
            out.push_str("\"\"");
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == '\'' && at(i + 1) == '\\' {
            i += 3;
            while i < chars.len() && chars[i] != '\'' {
                i += 1;
            }
            i += 1;
            out.push_str("' '");
        } else if c == '\'' && at(i + 2) == '\'' {
            i += 3;
            out.push_str("' '");
        } else {
            // A lifetime's quote falls through here, as any other character.
            out.push(c);
            i += 1;
        }
    }
    out
}

/// The tokens of stripped code: identifiers, `::`, and every other character on its own.
fn tokens(code: &str) -> Vec<String> {
    let chars: Vec<char> = code.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c.is_alphanumeric() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push(chars[start..i].iter().collect());
        } else if c == ':' && chars.get(i + 1) == Some(&':') {
            out.push("::".to_owned());
            i += 2;
        } else {
            out.push(c.to_string());
            i += 1;
        }
    }
    out
}

/// `tokens` without the items under `#[cfg(test)]`, and the names of the child modules declared
/// under it (`#[cfg(test)] mod tests;`).
fn without_tests(tokens: Vec<String>) -> (Vec<String>, Vec<String>) {
    const CFG_TEST: [&str; 7] = ["#", "[", "cfg", "(", "test", ")", "]"];
    let mut kept = Vec::with_capacity(tokens.len());
    let mut test_modules = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        if tokens[i..].starts_with(&CFG_TEST.map(String::from)) {
            i += CFG_TEST.len();
            let start = i;
            let mut depth = 0usize;
            while i < tokens.len() {
                match tokens[i].as_str() {
                    "(" | "[" | "{" => depth += 1,
                    ")" | "]" | "}" => {
                        depth -= 1;
                        if depth == 0 && tokens[i] == "}" {
                            break;
                        }
                    }
                    ";" if depth == 0 => break,
                    _ => {}
                }
                i += 1;
            }
            let item = &tokens[start..i.min(tokens.len())];
            if let [.., kw, name] = item
                && kw == "mod"
                && tokens.get(i).is_some_and(|t| t == ";")
            {
                test_modules.push(name.clone());
            }
            i += 1;
        } else {
            kept.push(tokens[i].clone());
            i += 1;
        }
    }
    (kept, test_modules)
}

/// Expands the `use` tree at `tokens[*i]` (after `use`, up to `;`) into whole paths, each with the
/// name it binds (`*` for a glob).
fn use_tree(
    tokens: &[String],
    i: &mut usize,
    prefix: Vec<String>,
    out: &mut Vec<(Vec<String>, String)>,
) {
    let mut path = prefix;
    loop {
        match tokens[*i].as_str() {
            "{" => {
                *i += 1;
                while tokens[*i] != "}" {
                    use_tree(tokens, i, path.clone(), out);
                    if tokens[*i] == "," {
                        *i += 1;
                    }
                }
                *i += 1;
                return;
            }
            "*" => {
                *i += 1;
                path.push("*".to_owned());
                out.push((path, "*".to_owned()));
                return;
            }
            "::" => *i += 1,
            segment => {
                path.push(segment.to_owned());
                *i += 1;
                if tokens[*i] == "::" {
                    continue;
                }
                if path.last().is_some_and(|s| s == "self") {
                    path.pop();
                }
                let mut name = path.last().cloned().unwrap_or_default();
                if tokens[*i] == "as" {
                    name = tokens[*i + 1].clone();
                    *i += 2;
                }
                out.push((path, name));
                return;
            }
        }
    }
}

/// The library's modules, read from `src/` (the binaries, `main.rs` and `bin/`, stand above it).
fn modules() -> Vec<Module> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut read = Vec::new();
    let mut test_only = Vec::new();
    for (file, _) in sources("src") {
        let relative = Path::new(&file)
            .strip_prefix(root.join("src"))
            .unwrap()
            .to_owned();
        if relative.starts_with("bin") || relative == Path::new("main.rs") {
            continue;
        }
        let mut path: Vec<String> = relative
            .with_extension("")
            .iter()
            .map(|s| s.to_string_lossy().into_owned())
            .collect();
        if path.last().is_some_and(|s| s == "mod" || s == "lib") {
            path.pop();
        }
        let text = std::fs::read_to_string(&file).unwrap();
        let (tokens, tests) = without_tests(tokens(&strip(&text)));
        test_only.extend(tests.into_iter().map(|t| [path.clone(), vec![t]].concat()));
        let file = relative.display().to_string();
        read.push((path, format!("src/{file}"), tokens));
    }
    read.retain(|(path, _, _)| !test_only.iter().any(|t| path.starts_with(t)));
    let known: Vec<Vec<String>> = read.iter().map(|(p, _, _)| p.clone()).collect();
    read.into_iter()
        .map(|(path, file, tokens)| {
            // A path as written in `path`'s module, made whole: `crate::...` for the library's own.
            let whole = |written: &[String]| -> Vec<String> {
                let mut at = path.clone();
                let mut rest = written;
                match written.first().map(String::as_str) {
                    Some("crate") => {
                        at.clear();
                        rest = &written[1..];
                    }
                    Some("self") => rest = &written[1..],
                    Some("super") => {
                        while rest.first().is_some_and(|s| s == "super") {
                            at.pop();
                            rest = &rest[1..];
                        }
                    }
                    Some(first)
                        if known.contains(&[path.clone(), vec![first.to_owned()]].concat()) => {}
                    _ => return written.to_vec(),
                }
                [vec!["crate".to_owned()], at, rest.to_vec()].concat()
            };
            let mut module = Module {
                path: path.clone(),
                file,
                tokens: Vec::new(),
                names: Default::default(),
                globs: Vec::new(),
                paths: Vec::new(),
            };
            let mut i = 0;
            while i < tokens.len() {
                if tokens[i] == "use" {
                    i += 1;
                    let mut tree = Vec::new();
                    use_tree(&tokens, &mut i, Vec::new(), &mut tree);
                    for (written, name) in tree {
                        let whole = whole(&written);
                        let written = written.join("::");
                        if name == "*" {
                            module
                                .globs
                                .push((whole[..whole.len() - 1].to_vec(), written));
                        } else {
                            module.names.insert(name, whole.clone());
                            module.paths.push((whole, written));
                        }
                    }
                    continue;
                }
                let starts_path = matches!(tokens[i].as_str(), "crate" | "super" | "self")
                    && tokens.get(i + 1).is_some_and(|t| t == "::")
                    && (i == 0 || tokens[i - 1] != "::");
                if starts_path {
                    let mut written = vec![tokens[i].clone()];
                    while tokens.get(i + 1).is_some_and(|t| t == "::")
                        && tokens
                            .get(i + 2)
                            .is_some_and(|t| t.starts_with(|c: char| c.is_alphabetic() || c == '_'))
                    {
                        written.push(tokens[i + 2].clone());
                        i += 2;
                    }
                    module.paths.push((whole(&written), written.join("::")));
                }
                module.tokens.push(tokens[i].clone());
                i += 1;
            }
            module
        })
        .collect()
}

/// The import arrows between the library's modules: (from, to, the path that makes it), by index
/// into `modules`. A path is followed through the `use`s (re-exports) of the modules it passes to
/// the module that defines its name; a `use m::*` brings an arrow for each of `m`'s names that
/// the importing module's code names.
fn arrows(modules: &[Module]) -> Vec<(usize, usize, String)> {
    let index = |path: &[String]| modules.iter().position(|m| m.path == path);
    let resolve = |path: &[String]| -> Option<usize> {
        let mut path = path.to_vec();
        let mut found = None;
        for _ in 0..16 {
            if path.first().is_none_or(|s| s != "crate") {
                break;
            }
            let segments = &path[1..];
            let deepest = (0..=segments.len())
                .rev()
                .find_map(|k| index(&segments[..k]).map(|m| (k, m)));
            let (k, m) = deepest.expect("the crate root is a module");
            found = Some(m);
            match segments.get(k).and_then(|name| modules[m].names.get(name)) {
                Some(target) if *target != path[..k + 2] => {
                    path = [target.clone(), segments[k + 1..].to_vec()].concat()
                }
                _ => break,
            }
        }
        found
    };
    let mut out = Vec::new();
    for (from, module) in modules.iter().enumerate() {
        for (path, written) in &module.paths {
            if let Some(to) = resolve(path) {
                out.push((from, to, written.clone()));
            }
        }
        for (glob, written) in &module.globs {
            let Some(g) = resolve(glob) else { continue };
            out.push((from, g, written.clone()));
            for (name, target) in &modules[g].names {
                if module.tokens.contains(name)
                    && let Some(to) = resolve(target)
                {
                    out.push((from, to, format!("{written}, which brings {name}")));
                }
            }
        }
    }
    out
}

/// Import circles of the library. A circle is modules that import each other, directly or through
/// others, where a module counts with everything below it: under each module, its children must
/// not import one another in a loop (so `a::x -> b` with `b -> a::y` is a circle of `a` and `b`).
/// A module and its own ancestors are never a circle: a parent declares, uses and re-exports its
/// children, and a child may use what its parent holds (`use super::X`). Read from the sources:
/// the `use` trees, followed through re-exports to the module that defines the name, what a
/// `use m::*` brings that the code names, and the `crate::`, `super::` and `self::` paths in the
/// code; comments, literals and `#[cfg(test)]` items are left out (a unit test may reach anywhere).
#[test]
fn no_module_imports_another_that_imports_it_back() {
    let modules = modules();
    // Each arrow counts between the two children of the deepest module holding both ends.
    let mut levels: std::collections::BTreeMap<Vec<String>, Vec<(String, String, String)>> =
        Default::default();
    for (from, to, via) in arrows(&modules) {
        let (a, b) = (&modules[from].path, &modules[to].path);
        let common = a.iter().zip(b).take_while(|(x, y)| x == y).count();
        if common == a.len() || common == b.len() {
            continue;
        }
        levels.entry(a[..common].to_vec()).or_default().push((
            a[common].clone(),
            b[common].clone(),
            format!("{} -> {} ({via})", modules[from].file, modules[to].file),
        ));
    }
    let mut circles = Vec::new();
    for (parent, edges) in &levels {
        let reaches = |start: &str, goal: &str| {
            let mut seen = vec![start.to_owned()];
            let mut stack = vec![start.to_owned()];
            while let Some(at) = stack.pop() {
                for (a, b, _) in edges {
                    if *a == at && !seen.contains(b) {
                        if b == goal {
                            return true;
                        }
                        seen.push(b.clone());
                        stack.push(b.clone());
                    }
                }
            }
            false
        };
        let mut reported: Vec<Vec<&String>> = Vec::new();
        for (a, _, _) in edges {
            let mut circle: Vec<&String> = edges
                .iter()
                .map(|(_, b, _)| b)
                .filter(|b| reaches(a, b) && reaches(b, a))
                .collect();
            if circle.is_empty() {
                continue;
            }
            circle.push(a);
            circle.sort();
            circle.dedup();
            if reported.contains(&circle) {
                continue;
            }
            let ties: Vec<&str> = edges
                .iter()
                .filter(|(a, b, _)| circle.contains(&a) && circle.contains(&b))
                .map(|(_, _, why)| why.as_str())
                .collect();
            let mut names: Vec<String> = circle
                .iter()
                .map(|c| [parent.clone(), vec![(*c).clone()]].concat().join("::"))
                .collect();
            names.sort();
            circles.push(format!(
                "crate::{{{}}}:\n  {}",
                names.join(", "),
                ties.join("\n  ")
            ));
            reported.push(circle);
        }
    }
    assert!(
        circles.is_empty(),
        "import circles:\n{}",
        circles.join("\n")
    );
}

/// The cluster wiring (`run`) stands above the tick, the planner and the quick start: none of them
/// imports it, by any path (whole paths, `super::`, re-exports), in code or in tests. What the
/// engine needs of the Lease (the fence, the intents record) is a value or a trait passed in.
#[test]
fn reconciler_plan_and_demo_never_import_the_cluster_wiring() {
    let modules = modules();
    let below = |m: &Module| {
        ["reconciler", "plan", "demo"].contains(&m.path.first().map_or("", String::as_str))
    };
    for (from, to, via) in arrows(&modules) {
        assert!(
            !(below(&modules[from]) && modules[to].path.first().is_some_and(|s| s == "run")),
            "{} imports {} ({via}): what the tick, the planner or the demo need of `run` belongs below it",
            modules[from].file,
            modules[to].file,
        );
    }
    for dir in ["src/reconciler", "src/plan", "src/demo.rs"] {
        refuse(
            dir,
            &["crate::run"],
            "`run` is the top of the house: nothing below imports it",
        );
    }
}
